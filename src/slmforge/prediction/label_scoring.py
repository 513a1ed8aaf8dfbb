"""Classification by exact log-likelihood of every allowed label, the prompt encoded once.

For each example, score(label) = log p(label tokens + EOS | prompt). The prompt runs once (batched, left
padded) with every label packed after it under a block attention mask, so each label costs only its own
few tokens (77 banking labels add ~300 tokens to a ~70-token prompt, instead of 77 copies of the prompt). Probabilities over the label set are the softmax of these scores; the prediction is
the argmax and the confidence its probability. Nothing is parsed, so the model can never "invent" a label.

``scoring`` corrects the base-model biases that make zero/k-shot label scoring a strawman (it collapses
onto short or generic labels: on an intent set with ``yes``/``no`` labels most zero-shot answers were
``yes``); probabilities are always the softmax over the label set of the corrected score:

- ``raw``: the log-likelihood above (the default; what a fine-tuned model is trained for).
- ``length_norm``: lm-eval's ``acc_norm``, the log-likelihood divided by the label's length in UTF-8
  bytes, so long labels are not penalised for having more tokens to get wrong (lm-eval divides by the
  continuation's length in characters; bytes equal characters for ASCII labels and do not depend on the
  tokenizer). Per-byte log-likelihoods are much closer together than whole-label ones, so its
  probabilities are flatter than raw's: compare thresholds within one scoring only.
- ``calibrated``: contextual calibration (Zhao et al. 2021, "Calibrate before use"). The label
  distribution ``p_cf`` the model gives content-free inputs (:data:`CONTENT_FREE_TEXTS`, rendered through
  the same prompt and shots) measures its prior for each label; the corrected score is
  ``log p(label | x) - log p_cf(label)``, renormalised over the labels: the ratio ``p / p_cf`` made a
  distribution again (the model's own label prior swapped for a uniform one). The argmax equals the
  paper's ``softmax(diag(p_cf)^-1 p)``, which applies a softmax to the ratios instead. ``p_cf`` is computed
  once per predictor (its shots are fixed) before its first batch, and reported by ``describe()``.

``score_labels_bruteforce`` re-encodes prompt + label for every pair; it is the reference the tests hold
the packed path (and every scoring) to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from slmforge.errors import ConfigError
from slmforge.modeling.internals import (
    CACHE_KWARG,
    block_attention_mask,
    decoder_and_head,
    grouped_kv_attention,
)
from slmforge.prediction.base import Prediction, eval_mode, length_sorted_batches
from slmforge.prediction.prefix_cache import SharedPrefix
from slmforge.prompting import prompt_token_ids
from slmforge.tasks.base import Task

SCORINGS = ("raw", "length_norm", "calibrated")
# Content-free inputs of contextual calibration (the paper's three): each carries no evidence for any
# label, so what the model prefers on them is its prior, which calibration divides out.
CONTENT_FREE_TEXTS = ("N/A", "", "[MASK]")


def check_scoring(scoring: str) -> str:
    """``scoring`` when it is one of :data:`SCORINGS`; a :class:`ConfigError` naming ``eval.scoring`` else."""
    if scoring not in SCORINGS:
        raise ConfigError(f"eval.scoring={scoring!r} is not one of {list(SCORINGS)}")
    return scoring


def label_byte_lengths(labels: Sequence[str]) -> list[int]:
    """Each label's length in UTF-8 bytes (at least 1): the ``length_norm`` divisor."""
    return [max(1, len(lab.encode("utf-8"))) for lab in labels]


def corrected_scores(
    scores: torch.Tensor,
    scoring: str,
    label_bytes: Sequence[int] | None = None,
    log_p_cf: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B, L]`` label log-likelihoods -> the scores of ``scoring`` (their softmax: the label probabilities).

    ``label_bytes`` (length_norm) and ``log_p_cf`` (calibrated: log of the content-free label
    distribution, ``[L]``) are required by their scoring."""
    if scoring == "raw":
        return scores
    if scoring == "length_norm":
        assert label_bytes is not None
        return scores / torch.tensor(label_bytes, dtype=scores.dtype, device=scores.device)
    if scoring == "calibrated":
        assert log_p_cf is not None
        return scores.log_softmax(-1) - log_p_cf.to(scores.device)
    raise ConfigError(f"eval.scoring={scoring!r} is not one of {list(SCORINGS)}")


def label_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[list[int]]:
    """Each label as its training target's token ids: the label's tokens, then EOS."""
    return [
        tokenizer(lab, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for lab in labels
    ]


def task_labels(task: Task, method: str) -> list[str]:
    """The classification task's labels, or a clear error naming ``method`` when it has none."""
    labels = task.protocol().labels
    if not labels:
        raise ValueError(f"{method} needs a classification task with labels (call task.setup first)")
    return list(labels)


@torch.no_grad()
def score_labels_bruteforce(
    model: torch.nn.Module, tokenizer: Any, prompt_ids: list[int], labels: Sequence[str]
) -> torch.Tensor:
    """log p(label + EOS | prompt) for each label, one full forward per label (slow, exact reference)."""
    scores = []
    device = next(model.parameters()).device
    for lab_ids in label_token_ids(tokenizer, labels):
        ids = torch.tensor([prompt_ids + lab_ids], device=device)
        logp = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float().log_softmax(-1)
        scores.append(logp.gather(1, torch.tensor(lab_ids, device=device)[:, None]).sum())
    return torch.stack(scores)


def head_logits(
    head: torch.nn.Module, hidden: torch.Tensor, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM ``head``'s logits ``[N, vocab]`` (its dtype) at ``hidden`` ``[N, d]`` and their float32
    log-normaliser ``[N]``: ``log p(t | row i) = logits[i, t].float() - lse[i]``.

    Only the normaliser is computed over the whole vocabulary, ``chunk`` rows at a time (a few MB that
    stay in cache): a full ``log_softmax`` writes a float32 ``[N, vocab]`` tensor that callers read a
    handful of entries from, and cost as much as the bf16 head itself on an AMX CPU
    (``BENCHMARKS.md``).
    """
    logits = head(hidden)
    return logits, log_normaliser(logits, chunk)


def log_normaliser(logits: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """float32 ``logsumexp`` of ``logits`` ``[N, vocab]`` over the vocabulary, ``chunk`` rows at a time."""
    return torch.cat([logits[s : s + chunk].float().logsumexp(-1) for s in range(0, len(logits), chunk)])


class LabelScorer:
    """Batched exact label scoring: ``batch_size`` prompts per forward pass, all labels packed after each.

    ``scoring``: raw | length_norm | calibrated (see the module docstring); the prediction is the argmax
    of the corrected score and ``details["logp"]`` stays the raw log-likelihood of the chosen label.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: Task,
        batch_size: int = 16,
        max_prompt_tokens: int | None = None,
        shots: Sequence[dict[str, Any]] = (),
        name: str = "local",
        prefix_cache: bool = True,
        scoring: str = "raw",
    ) -> None:
        labels = task_labels(task, "label scoring")
        self.scoring = check_scoring(scoring)
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.labels = list(labels)
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.shots = shots if callable(shots) else list(shots)
        self.name = name
        self.label_ids = label_token_ids(tokenizer, self.labels)
        self.prefix = SharedPrefix(model, enabled=prefix_cache)
        self.label_bytes = label_byte_lengths(self.labels)
        self._log_p_cf: torch.Tensor | None = None
        self.label_decoding_requested: str | None = None  # a trie decoding the factory replaced (scoring)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decoding": "label_scoring",
            "scoring": self.scoring,
            "batch_size": self.batch_size,
            "k": len(self.shots),
            "prefix_cache": self.prefix.enabled,
        }
        if self.label_decoding_requested:
            out["label_decoding_requested"] = self.label_decoding_requested
        if self.scoring == "calibrated":
            out["content_free"] = list(CONTENT_FREE_TEXTS)
            if self._log_p_cf is not None:  # known once the first batch was predicted
                p_cf = self._log_p_cf.exp().tolist()
                out["content_free_probs"] = {
                    lab: float(f"{x:.4g}") for lab, x in zip(self.labels, p_cf, strict=True)
                }
        return out

    def content_free_log_probs(self) -> torch.Tensor:
        """``[L]`` log of ``p_cf``: the label distribution averaged over the content-free inputs, each
        rendered through this predictor's prompt and shots (computed once, then cached). With shots chosen
        per example (``shot_selection=similar``) each content-free input gets the shots chosen for it, so
        ``p_cf`` is the prior of the prompt format rather than of any one example's shots."""
        if self._log_p_cf is None:
            examples = [{"id": f"content_free_{i}", "text": t} for i, t in enumerate(CONTENT_FREE_TEXTS)]
            with eval_mode(self.model):
                logp = self.score_batch([self.prompt_ids(ex) for ex in examples]).double().log_softmax(-1)
            # log of the mean probability, in log space: a label the model all but excludes on every
            # content-free input (p below float range) gets a finite, very negative log p_cf, not -inf.
            self._log_p_cf = (logp.logsumexp(0) - math.log(len(examples))).float().cpu()
        return self._log_p_cf

    def label_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Raw ``[B, L]`` log-likelihoods -> this predictor's scoring (see :func:`corrected_scores`)."""
        if self.scoring == "raw":
            return scores
        log_p_cf = self.content_free_log_probs() if self.scoring == "calibrated" else None
        return corrected_scores(scores.float(), self.scoring, self.label_bytes, log_p_cf)

    def prompt_ids(self, example: dict[str, Any]) -> list[int]:
        return prompt_token_ids(self.tokenizer, self.task, example, self.shots, self.max_prompt_tokens)

    @torch.no_grad()
    def score_batch(self, prompts: list[list[int]], labels: Sequence[int] | None = None) -> torch.Tensor:
        """[B, L] log-likelihood of each label given each prompt, in one forward pass (``labels``: only
        these label indices, in this order).

        Each row is ``[left padding] + prompt + label_1 + label_2 + ...`` (labels without their final EOS
        as inputs) with a block attention mask: prompt tokens attend causally to the prompt; each label's
        tokens attend to the prompt and causally to their own label only, with positions continuing
        from the prompt's end. So every label is scored exactly as if it followed the prompt alone, but
        the prompt is encoded once and no key/value cache is copied.
        """
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id
        # The prefix all prompts share is encoded once (prefix_cache); rows hold only their own tails,
        # which attend to the cached prefix and continue its positions.
        shared = self.prefix.for_prompts(prompts)
        prompts = [p[shared:] for p in prompts]
        n, width = len(prompts), max(len(p) for p in prompts)
        label_ids = self.label_ids if labels is None else [self.label_ids[j] for j in labels]
        label_inputs = [lab[:-1] for lab in label_ids]  # the last token (EOS) is only ever a target
        offsets, total = [], 0
        for inp in label_inputs:
            offsets.append(total)
            total += len(inp)
        seq = width + total
        ids = torch.full((n, seq), pad, dtype=torch.long)
        pos = torch.zeros((n, seq), dtype=torch.long)
        allowed = torch.zeros((n, seq, seq), dtype=torch.bool)
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        packed_ids = torch.tensor([t for inp in label_inputs for t in inp], dtype=torch.long)
        # Within the label block: causal inside each label, nothing across labels.
        block = torch.zeros((total, total), dtype=torch.bool)
        rel_pos = torch.zeros(total, dtype=torch.long)
        for off, inp in zip(offsets, label_inputs, strict=True):
            k = len(inp)
            block[off : off + k, off : off + k] = torch.ones((k, k), dtype=torch.bool).tril()
            rel_pos[off : off + k] = torch.arange(k)
        for i, p in enumerate(prompts):
            start = width - len(p)
            ids[i, start:width] = torch.tensor(p)
            ids[i, width:] = packed_ids
            pos[i, start:width] = shared + torch.arange(len(p))
            pos[i, width:] = shared + len(p) + rel_pos
            real = torch.zeros(width, dtype=torch.bool)
            real[start:] = True
            allowed[i, :width, :width] = causal & real[None, :]
            allowed[i, width:, :width] = real[None, :]
            allowed[i, width:, width:] = block
            # Padding queries see only themselves: a fully masked row would turn into NaNs under SDPA.
            pad_idx = torch.arange(start)
            allowed[i, pad_idx, pad_idx] = True
        if shared:  # every query sees the whole cached prefix
            allowed = torch.cat([torch.ones((n, seq, shared), dtype=torch.bool), allowed], dim=2)
        ids, pos, allowed = ids.to(device), pos.to(device), allowed.to(device)
        mask = block_attention_mask(allowed[:, None], self.model)

        # Positions whose next-token distribution is needed: the prompt's last token (first label token,
        # shared by all labels) and every packed label input (its label's next token).
        parts = decoder_and_head(self.model)
        with grouped_kv_attention(device):
            if parts is not None:
                kwargs = {CACHE_KWARG: self.prefix.cache(n)} if shared else {}
                hidden = parts[0](
                    input_ids=ids, attention_mask=mask, position_ids=pos, **kwargs
                ).last_hidden_state
                head = parts[1]
            else:
                hidden, head = None, None
                logits_all = self.model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        first_tok = torch.tensor([lab[0] for lab in label_ids], device=device)
        next_tok = torch.tensor([t for lab in label_ids for t in lab[1:]], device=device)
        label_of = torch.tensor([j for j, inp in enumerate(label_inputs) for _ in inp], device=device)
        scores = torch.zeros((n, len(label_ids)), device=device)
        for i in range(n):
            if hidden is not None:  # last prompt position + all label positions
                logits, lse = head_logits(head, hidden[i, width - 1 :])
            else:
                logits = logits_all[i, width - 1 :]
                lse = log_normaliser(logits)
            scores[i] = logits[0, first_tok].float() - lse[0]
            tok_logp = logits[1:].gather(1, next_tok[:, None]).squeeze(1).float() - lse[1:]
            scores[i].index_add_(0, label_of, tok_logp)
        return scores

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        prompts = [self.prompt_ids(ex) for ex in examples]
        results: list[Prediction | None] = [None] * len(examples)
        if self.scoring == "calibrated":
            self.content_free_log_probs()  # once, before any batch is timed
        with eval_mode(self.model):
            for idx, t0 in length_sorted_batches([len(p) for p in prompts], self.batch_size):
                scores = self.score_batch([prompts[i] for i in idx])
                probs = self.label_scores(scores).softmax(-1).cpu()
                elapsed_ms = (time.perf_counter() - t0) * 1000 / len(idx)
                for row, i in enumerate(idx):
                    p = probs[row]
                    best = int(p.argmax())
                    details: dict[str, Any] = {
                        "logp": float(scores[row, best]) if math.isfinite(scores[row, best]) else None
                    }
                    if self.scoring != "raw":  # what raw scoring would have answered
                        details["raw_argmax"] = self.labels[int(scores[row].argmax())]
                    results[i] = Prediction(
                        pred=self.labels[best],
                        confidence=float(p[best]),
                        latency_ms=elapsed_ms,
                        prompt_tokens=len(prompts[i]),
                        completion_tokens=len(self.label_ids[best]),
                        raw_output=self.labels[best],
                        label_probs={lab: float(x) for lab, x in zip(self.labels, p, strict=True)},
                        details=details,
                    )
        return [r for r in results if r is not None]
