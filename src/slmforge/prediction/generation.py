"""Batched greedy generation for extraction and generation tasks (optionally schema-constrained).

Prompts are rendered with the tokenizer's chat template and tokenised without special tokens, exactly as
training rows are (:func:`slmforge.training.batching.encode_example`), so a fine-tuned model sees its
training prompt. A batch is left padded (every prompt ends at the last column, so all rows generate
their next token at the same column) with explicit position ids, and decoded with one shared key/value
cache; greedy output is therefore the same token ids as decoding each example alone (tested).

Stopping: a row stops at EOS or after ``max_new_tokens``; for JSON tasks (``task.output_format ==
"json"``) also right after the token that closes the first balanced top-level ``{...}``, and any text that
token carried after the brace is cut. Finished rows leave the batch and its cache, so the rows still
decoding pay only for themselves. With a constraint whose session has ``forced(tokens)`` (the label trie),
stepping ends once no live row has a choice left: the forced rests are scored in one pass. Examples are
sorted by prompt length so batches pad little, and returned in input order.

Confidence is the sequence probability ``exp(sum of token log-probs)`` over the kept tokens (including
EOS when the model emitted it), under the distribution decoding actually used: with ``constrained=True``
that is the model's distribution renormalised over the allowed tokens (``details["model_logprob"]``
keeps the unconstrained model's log-probability of the same output). ``details["mean_logprob"]`` is
the length-normalised version, more comparable across answers of different lengths.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from slmforge.modeling.internals import CACHE_KWARG, decoder_and_head, returned_cache, sliding_window
from slmforge.prediction.base import Prediction, eval_mode, length_sorted_batches
from slmforge.prediction.constrained import GrammarConstraint
from slmforge.prediction.prefix_cache import SharedPrefix
from slmforge.prompting import prompt_token_ids
from slmforge.schema.scanner import JsonEndScanner
from slmforge.tasks.base import Task

DEFAULT_MAX_NEW_TOKENS = 256


def _cache_rows(cache: Any, rows: list[int]) -> Any:
    """A new key/value cache holding ``rows`` of ``cache`` (copies: the original is left as it is)."""
    from transformers import DynamicCache

    idx = torch.tensor(rows, device=cache.layers[0].keys.device)
    return DynamicCache(ddp_cache_data=[(layer.keys[idx], layer.values[idx]) for layer in cache.layers])


def json_object_end(text: str) -> int | None:
    """Index just past the first balanced top-level ``{...}`` in ``text``, or None if it never closes."""
    scanner = JsonEndScanner()
    scanner.feed(text)
    return scanner.end


@dataclass
class Generated:
    """One row's decoding result: kept token ids (with EOS / the closing-brace token), their log-probs."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    model_logprobs: list[float] = field(default_factory=list)
    stop_reason: str = "max_new_tokens"  # | "eos" | "json_end"


class GenerationPredictor:
    """Greedy generation, batched with left padding and a shared KV cache.

    max_new_tokens: None -> the task's bound (``task.set_length_bound``) or 256; constrained, the
        worst-case length of a valid output (a cap: a model that knows the format stops far earlier).
    constrained: decode with the task's output grammar enforced (``PredictionProtocol.output_grammar``: an
        extraction schema, a generation task's text constraints, spans copied from the input; see
        :mod:`slmforge.prediction.constrained`); ``constraint_options`` go to the task's grammar
        (``max_string_chars``, ``max_list_items``, ...); by default an extraction's string and list bounds
        come from the training data (``ExtractionTask.value_bounds``).
    stop_at_json_end: for JSON tasks, stop right after the first complete object.
    shots: fixed few-shot examples, or a callable giving each example its own (``SimilarShots``).
    batch_size=1 decodes each example alone (what an online request sees).
    constraint: any object with ``session(vocab_size, device, contexts)`` whose session's
        ``mask(generated, rows)`` gives the allowed next tokens per row (e.g.
        :class:`slmforge.prediction.label_trie.LabelTrie`); overrides ``constrained``.
    prefix_cache: encode the prompt prefix all examples share once and reuse its key/value cache
        (:mod:`slmforge.prediction.prefix_cache`); same outputs, much less prompt compute.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: Task,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        constrained: bool = False,
        shots: Sequence[dict[str, Any]] | Callable[[dict[str, Any]], Sequence[dict[str, Any]]] = (),
        stop_at_json_end: bool = True,
        max_prompt_tokens: int | None = None,
        constraint_options: dict[str, Any] | None = None,
        name: str = "local",
        constraint: Any | None = None,
        prefix_cache: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.batch_size = batch_size
        self._max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.shots = shots if callable(shots) else list(shots)
        self.stop_at_json_end = stop_at_json_end
        self.max_prompt_tokens = max_prompt_tokens
        self.name = name
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self.constraint: Any | None = constraint
        self.prefix = SharedPrefix(model, enabled=prefix_cache)
        if constrained and constraint is None:
            protocol = task.protocol()
            output_grammar = protocol.output_grammar
            if output_grammar is None:
                raise ValueError(
                    f"constrained decoding needs a task with an output grammar (an extraction schema, or "
                    f"constraints a grammar can express); task '{task.name}' has none (set eval.constrained=false)"
                )
            options = dict(constraint_options or {})
            self.constraint = GrammarConstraint(
                tokenizer, lambda example: output_grammar(example, options), per_row=protocol.grammar_per_row
            )

    @property
    def max_new_tokens(self) -> int:
        """The given value; else, constrained, the worst-case output length (so every output completes);
        else the task's bound (read at predict time: it is usually set after the predictor is built)."""
        if self._max_new_tokens:
            return self._max_new_tokens
        if self.constraint is not None and getattr(self.constraint, "max_tokens", None) is not None:
            return self.constraint.max_tokens + 1  # + EOS
        return self.task.protocol().max_new_tokens or DEFAULT_MAX_NEW_TOKENS

    @property
    def json_stop(self) -> bool:
        return self.stop_at_json_end and self.task.protocol().output_format == "json"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decoding": "constrained_greedy" if self.constrained else "greedy",
            "batch_size": self.batch_size,
            "k": len(self.shots),
            "max_new_tokens": self.max_new_tokens,
            "stop_at_json_end": self.json_stop,
            "prefix_cache": self.prefix.enabled,
        }
        if self.constraint is not None:
            out["constraint"] = self.constraint.describe()
        return out

    def prompt_ids(self, example: dict[str, Any]) -> list[int]:
        return prompt_token_ids(self.tokenizer, self.task, example, self.shots, self.max_prompt_tokens)

    # ------------------------------------------------------------------ decoding

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        cache: Any,
        at: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        """Next-token logits ``[B, V]`` (float32) at the last column, or ``[P, V]`` at the ``P`` columns the
        bool ``[B, T]`` mask ``at`` selects (row-major order); and the updated cache."""
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "position_ids": pos,
            "use_cache": True,
        }
        if cache is not None:
            kwargs[CACHE_KWARG] = cache
        parts = decoder_and_head(self.model)
        if parts is not None:  # the LM head only where logits are needed, not over the whole prompt
            out = parts[0](**kwargs)
            hidden = out.last_hidden_state
            logits = parts[1](hidden[:, -1] if at is None else hidden[at])
        else:
            out = self.model(**kwargs)
            logits = out.logits[:, -1] if at is None else out.logits[at]
        return logits.float(), returned_cache(out)

    @torch.no_grad()
    def generate_batch(
        self,
        prompts: list[list[int]],
        max_new_tokens: int | None = None,
        contexts: Sequence[dict[str, Any]] | None = None,
    ) -> list[Generated]:
        """Greedy-decode a batch of prompt token ids; one :class:`Generated` per prompt, in order.
        ``contexts``: the prompts' examples (per-row constraints such as spans copied from the input)."""
        max_new = max_new_tokens or self.max_new_tokens
        device = next(self.model.parameters()).device
        shared = self.prefix.for_prompts(prompts)
        window = sliding_window(self.model)
        if shared and window and max(len(p) for p in prompts) + max_new > window:
            # Left padding sits between the cached prefix and each row's tail, so a sliding-window layer's
            # window would count padding and reach back differently from a plain forward: no shared prefix.
            shared = 0
        tails = [p[shared:] for p in prompts]
        n, width = len(tails), max(len(p) for p in tails)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, shared + width), dtype=torch.long)
        mask[:, :shared] = 1  # the cached prefix, then left padding, then each prompt's own tail
        for i, p in enumerate(tails):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, shared + width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)[:, shared:]
        lengths = mask.sum(-1)

        results = [Generated() for _ in range(n)]
        scanners = [JsonEndScanner() if self.json_stop else None for _ in range(n)]
        live = list(range(n))  # the row each position of the running batch decodes
        logits, cache = self._forward(ids, mask, pos, self.prefix.cache(n) if shared else None)
        session = (
            self.constraint.session(logits.shape[-1], device, contexts)
            if self.constraint is not None
            else None
        )
        row_bound = (
            getattr(session, "max_tokens", None) if getattr(self.constraint, "per_row", False) else None
        )
        if row_bound is not None and not (max_new_tokens or self._max_new_tokens):
            # Per-row grammars: the batch's worst case completes (+ EOS), within the model's context.
            max_new = max(max_new, row_bound + 1)
            context = getattr(getattr(self.model, "config", None), "max_position_embeddings", None)
            if isinstance(context, int):
                max_new = max(1, min(max_new, context - shared - width))
        forced_tail = getattr(session, "forced", None)
        for step in range(max_new):
            logp = logits.log_softmax(-1)
            if session is not None:
                allowed = session.mask([results[r].token_ids for r in live], live)
                used_logp = logits.masked_fill(~allowed, float("-inf")).log_softmax(-1)
            else:
                used_logp = logp
            choice = used_logp.argmax(-1)
            chosen = choice.tolist()
            tok_lp = used_logp.gather(1, choice[:, None]).squeeze(1).tolist()
            model_lp = logp.gather(1, choice[:, None]).squeeze(1).tolist() if session is not None else tok_lp
            going: list[int] = []  # batch positions that decode another step
            for b, r in enumerate(live):
                tok, res, scanner = chosen[b], results[r], scanners[r]
                res.token_ids.append(tok)
                res.logprobs.append(tok_lp[b])
                res.model_logprobs.append(model_lp[b])
                if tok == self.eos_id:
                    res.stop_reason = "eos"
                elif scanner is not None and scanner.feed(self.tokenizer.decode([tok])):
                    res.stop_reason = "json_end"
                else:
                    going.append(b)
            if going and forced_tail is not None:
                # Once no row has anything left to decide, their forced rests go in one pass. (Rows decided
                # earlier step on meanwhile: a forward costs mostly its fixed share, reading the weights.)
                forced = [forced_tail(results[live[b]].token_ids) for b in going]
                if all(forced):
                    self._score_forced(
                        [results[live[b]] for b in going],
                        forced,
                        cache if len(going) == len(live) else _cache_rows(cache, going),
                        mask[going],
                        (lengths[going] + step).tolist(),
                    )
                    break
            if not going or step == max_new - 1:
                break
            if len(going) < len(live):
                # Finished rows leave the batch (and the cache): a row kept as padding costs compute.
                keep = torch.tensor(going, device=device)
                cache.batch_select_indices(keep)
                mask, lengths, choice = mask[keep], lengths[keep], choice[keep]
                live = [live[b] for b in going]
            mask = torch.cat([mask, torch.ones((len(live), 1), dtype=mask.dtype, device=device)], dim=1)
            logits, cache = self._forward(choice[:, None], mask, (lengths + step)[:, None], cache)
        return results

    def _score_forced(
        self,
        results: list[Generated],
        tails: list[list[int]],
        cache: Any,
        mask: torch.Tensor,
        first_positions: list[int],
    ) -> None:
        """Append each row's forced tokens with their log-probabilities, from one forward pass.

        A row gets here when its constraint allows exactly one continuation to the end (a label-trie
        branch with a single label below it): decoding step by step would choose those tokens anyway,
        one cached forward per token. Instead the row's last chosen token and the forced ones but the last
        go in as one right-padded, masked block over the row's own cache (``first_positions``: where the
        block starts), and the logits at each real column score the next forced token. The constrained
        log-probability of a forced token is 0 (it is the only allowed one), its ``model_logprobs`` entry
        the model's: the same record as stepping.
        """
        device = mask.device
        width = max(len(tail) for tail in tails)
        ids = torch.full((len(tails), width), self.pad_id, dtype=torch.long)
        block = torch.zeros((len(tails), width), dtype=mask.dtype)
        for k, (res, tail) in enumerate(zip(results, tails, strict=True)):
            ids[k, : len(tail)] = torch.tensor([res.token_ids[-1], *tail[:-1]])
            block[k, : len(tail)] = 1
        pos = torch.tensor(first_positions)[:, None] + torch.arange(width)
        at = block.bool().to(device)
        logits, _ = self._forward(
            ids.to(device), torch.cat([mask, block.to(device)], 1), pos.to(device), cache, at
        )
        # ``at`` is row-major: each row's columns in turn. Only the forced tokens' log-probabilities are
        # needed: their logit minus the log-normaliser.
        targets = torch.tensor([tok for tail in tails for tok in tail], device=device)
        picked = (logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(-1)).tolist()
        for res, tail in zip(results, tails, strict=True):
            model_lps, picked = picked[: len(tail)], picked[len(tail) :]
            for tok, model_lp in zip(tail, model_lps, strict=True):
                res.token_ids.append(tok)
                res.logprobs.append(0.0)
                res.model_logprobs.append(model_lp)
            res.stop_reason = "eos" if tail[-1] == self.eos_id else "max_new_tokens"

    def _text(self, res: Generated) -> str:
        ids = res.token_ids[:-1] if res.stop_reason == "eos" else res.token_ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        if res.stop_reason == "json_end":
            end = json_object_end(text)
            if end is not None:  # the closing token may carry more text ("}\n"): cut it
                text = text[:end]
        return text

    def to_prediction(self, res: Generated, prompt_tokens: int, latency_ms: float) -> Prediction:
        """One decoded row as a :class:`Prediction` (the task parses the text)."""
        raw = self._text(res)
        pred, parse_details = self.task.parse(raw)
        total = sum(res.logprobs)
        details: dict[str, Any] = {
            "logprob": total,
            "mean_logprob": total / len(res.logprobs) if res.logprobs else 0.0,
            "stop_reason": res.stop_reason,
            **parse_details,
        }
        if self.constraint is not None:
            details["model_logprob"] = sum(res.model_logprobs)
        return Prediction(
            pred=pred,
            confidence=math.exp(total) if math.isfinite(total) else 0.0,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(res.token_ids),
            raw_output=raw,
            details=details,
        )

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        prompts = [self.prompt_ids(ex) for ex in examples]
        results: list[Prediction | None] = [None] * len(examples)
        with eval_mode(self.model):
            for idx, t0 in length_sorted_batches([len(p) for p in prompts], self.batch_size):
                generated = self.generate_batch(
                    [prompts[i] for i in idx], contexts=[examples[i] for i in idx]
                )
                elapsed_ms = (time.perf_counter() - t0) * 1000 / len(idx)
                for res, i in zip(generated, idx, strict=True):
                    results[i] = self.to_prediction(res, len(prompts[i]), elapsed_ms)
        return [r for r in results if r is not None]
