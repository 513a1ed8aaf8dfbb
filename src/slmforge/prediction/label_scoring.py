"""Classification by exact log-likelihood of every allowed label, the prompt encoded once.

For each example, score(label) = log p(label tokens + EOS | prompt). The prompt runs once (batched, left
padded); its key/value cache is then shared by every (example, label) pair, so each label costs only
its own few tokens. Probabilities over the label set are the softmax of these scores; the prediction is
the argmax and the confidence its probability. Nothing is parsed, so the model can never "invent" a label.

``score_labels_bruteforce`` re-encodes prompt + label for every pair; it is the reference the tests hold
the cached path to.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from slmforge.prediction.base import Prediction
from slmforge.tasks.base import Task, render_prompt


def _label_token_ids(tokenizer: Any, labels: Sequence[str]) -> list[list[int]]:
    ids = [tokenizer(lab, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for lab in labels]
    return ids


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        decoder, head = base.get_decoder(), base.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        return None
    if decoder is None or head is None or getattr(base.config, "final_logit_softcapping", None):
        return None
    return decoder, head


def _cache_kwarg() -> str:
    # transformers 5.x renamed `past_key_values` to `cache` (the old name warns, then goes away).
    import inspect

    from transformers import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


CACHE_KWARG = _cache_kwarg()


def _returned_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()
def score_labels_bruteforce(
    model: torch.nn.Module, tokenizer: Any, prompt_ids: list[int], labels: Sequence[str]
) -> torch.Tensor:
    """log p(label + EOS | prompt) for each label, one full forward per label (slow, exact reference)."""
    scores = []
    device = next(model.parameters()).device
    for lab_ids in _label_token_ids(tokenizer, labels):
        ids = torch.tensor([prompt_ids + lab_ids], device=device)
        logp = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1].float().log_softmax(-1)
        scores.append(logp.gather(1, torch.tensor(lab_ids, device=device)[:, None]).sum())
    return torch.stack(scores)


class LabelScorer:
    """Batched exact label scoring. ``batch_size`` prompts per forward; ``pairs_per_forward`` bounds the
    (example, label) pairs scored at once (memory: each pair holds a copy of its prompt's cache)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: Task,
        batch_size: int = 16,
        pairs_per_forward: int = 256,
        max_prompt_tokens: int = 1024,
        shots: Sequence[dict[str, Any]] = (),
        name: str = "local",
    ) -> None:
        labels = getattr(task, "labels", None)
        if not labels:
            raise ValueError("label scoring needs a classification task with labels (call task.setup first)")
        self.model = model
        self.tokenizer = tokenizer
        self.task = task
        self.labels = list(labels)
        self.batch_size = batch_size
        self.pairs_per_forward = pairs_per_forward
        self.max_prompt_tokens = max_prompt_tokens
        self.shots = list(shots)
        self.name = name
        self.label_ids = _label_token_ids(tokenizer, self.labels)

    def describe(self) -> dict[str, Any]:
        return {"decoding": "label_scoring", "batch_size": self.batch_size, "k": len(self.shots)}

    def prompt_ids(self, example: dict[str, Any]) -> list[int]:
        prompt = render_prompt(self.tokenizer, self.task.messages(example, self.shots))
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_prompt_tokens:
            head = min(32, self.max_prompt_tokens // 4)
            ids = ids[:head] + ids[len(ids) - (self.max_prompt_tokens - head) :]
        return ids

    @torch.no_grad()
    def score_batch(self, prompts: list[list[int]]) -> torch.Tensor:
        """[B, L] log-likelihood of each label given each prompt, via one shared prompt cache."""
        from transformers import DynamicCache

        model = self.model
        device = next(model.parameters()).device
        pad = self.tokenizer.pad_token_id
        n, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):  # left padding: every prompt ends at the last column
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        parts = _decoder_and_head(model)
        if parts is not None:  # the LM head only at the last prompt position
            out = parts[0](input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            first_logp = parts[1](out.last_hidden_state[:, -1]).float().log_softmax(-1)  # [B, V]
        else:
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            first_logp = out.logits[:, -1].float().log_softmax(-1)
        kv = [(layer.keys, layer.values) for layer in _returned_cache(out).layers]
        lengths = mask.sum(-1)

        n_labels = len(self.labels)
        first_tok = torch.tensor([lab[0] for lab in self.label_ids], device=device)
        scores = first_logp[:, first_tok].clone()  # [B, L]; continuation terms are added below
        cont_len = max(len(lab) for lab in self.label_ids) - 1
        pairs = [(b, j) for b in range(n) for j in range(n_labels)]
        for start in range(0, len(pairs), self.pairs_per_forward):
            chunk = pairs[start : start + self.pairs_per_forward]
            b_idx = torch.tensor([b for b, _ in chunk], device=device)
            inp = torch.full((len(chunk), cont_len), pad, dtype=torch.long)
            tgt = torch.full((len(chunk), cont_len), -100, dtype=torch.long)
            cmask = torch.zeros((len(chunk), cont_len), dtype=torch.long)
            for r, (_, j) in enumerate(chunk):
                lab = self.label_ids[j]
                inp[r, : len(lab) - 1] = torch.tensor(lab[:-1])
                tgt[r, : len(lab) - 1] = torch.tensor(lab[1:])
                cmask[r, : len(lab) - 1] = 1
            inp, tgt, cmask = inp.to(device), tgt.to(device), cmask.to(device)
            cache = DynamicCache(ddp_cache_data=[(k[b_idx], v[b_idx]) for k, v in kv], config=model.config)
            full_mask = torch.cat([mask[b_idx], cmask], dim=1)
            cpos = lengths[b_idx, None] + torch.arange(cont_len, device=device)[None]
            sel = tgt != -100
            if parts is not None:  # LM head only where a label token is scored
                decoder, head = parts
                hidden = decoder(
                    input_ids=inp, attention_mask=full_mask, position_ids=cpos, **{CACHE_KWARG: cache}
                ).last_hidden_state
                logp = head(hidden[sel]).float().log_softmax(-1)
            else:
                logits = model(
                    input_ids=inp, attention_mask=full_mask, position_ids=cpos, **{CACHE_KWARG: cache}
                ).logits
                logp = logits[sel].float().log_softmax(-1)
            tok_logp = logp.gather(1, tgt[sel][:, None]).squeeze(1)
            row_of = torch.arange(len(chunk), device=device)[:, None].expand_as(tgt)[sel]
            pair_sum = torch.zeros(len(chunk), device=device).index_add_(0, row_of, tok_logp)
            for r, (b, j) in enumerate(chunk):
                scores[b, j] += pair_sum[r]
        return scores

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        was_training = self.model.training
        self.model.eval()
        prompts = [self.prompt_ids(ex) for ex in examples]
        # Sort by length so each batch pads little; results are put back in input order.
        order = sorted(range(len(examples)), key=lambda i: len(prompts[i]))
        results: list[Prediction | None] = [None] * len(examples)
        try:
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                t0 = time.perf_counter()
                scores = self.score_batch([prompts[i] for i in idx])
                probs = scores.softmax(-1).cpu()
                elapsed_ms = (time.perf_counter() - t0) * 1000 / len(idx)
                for row, i in enumerate(idx):
                    p = probs[row]
                    best = int(p.argmax())
                    results[i] = Prediction(
                        pred=self.labels[best],
                        confidence=float(p[best]),
                        latency_ms=elapsed_ms,
                        prompt_tokens=len(prompts[i]),
                        completion_tokens=len(self.label_ids[best]),
                        raw_output=self.labels[best],
                        label_probs={lab: round(float(x), 6) for lab, x in zip(self.labels, p, strict=True)},
                        details={"logp": float(scores[row, best]) if math.isfinite(scores[row, best]) else None},
                    )
        finally:
            self.model.train(was_training)
        return [r for r in results if r is not None]
