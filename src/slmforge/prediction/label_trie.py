"""Classification by greedy decoding constrained to the trie of label token sequences.

Each label is tokenised as in training (label tokens + EOS); the sequences form a prefix tree. Decoding
runs the batched, KV-cached greedy loop of :class:`~slmforge.prediction.generation.GenerationPredictor`
with only the current trie node's children allowed, so every output is exactly one label and a batch
finishes after at most the longest label's token count (~5 steps for banking77). The prompt runs once
(its shared prefix once per evaluation, see :mod:`slmforge.prediction.prefix_cache`).

Compared with exact scoring (:mod:`slmforge.prediction.label_scoring`), which appends every label's
tokens to every prompt (77 banking77 labels ≈ 300 extra tokens per example), the trie costs a few
incremental steps. Greedy decoding alone (``exact=False``) can miss the label with the highest total
log-probability when an early token is misleading. With ``exact=True`` (the default) each result is
*certified* instead: every label greedy decoding did not reach leaves the path at some step through an
allowed token it did not take, so its log-probability is at most that step's path log-probability plus
the token's; when the best such bound is below the greedy label's own log-probability (by a margin that
absorbs float noise), the greedy label is exactly the argmax that exact scoring would return. Rows that
cannot be certified — an unsure model — are re-scored exactly with :class:`LabelScorer`. Predictions
therefore equal exact scoring's (tested), and cost a few cached steps for every certified row.

Confidence is the label's probability normalised over the label set, as with exact scoring. For a
certified row the other labels' total mass is bounded by the untaken allowed tokens' mass (summed over
steps), so ``p / (p + that mass)`` is used: a lower bound that is tight when a fine-tuned model's mass in
each branch ends in a label. Re-scored rows carry the exact value. ``exact=False`` keeps the greedy
path probability renormalised over the trie children at each step (a proper distribution over labels).
The full per-label distribution is not computed (``label_probs`` is None); temperature scaling needs
label scoring.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from slmforge.prediction.base import Prediction
from slmforge.prediction.constrained import allowed_mask
from slmforge.prediction.generation import Generated, GenerationPredictor
from slmforge.prediction.label_scoring import LabelScorer, label_token_ids, task_labels
from slmforge.tasks.base import Task


class LabelTrie:
    """The prefix tree of label token sequences, as a decoding constraint (``session().mask``)."""

    def __init__(self, labels: Sequence[str], token_ids: Sequence[Sequence[int]]) -> None:
        self.children: dict[tuple[int, ...], list[int]] = {}
        self.label_at: dict[tuple[int, ...], str] = {}
        for label, ids in zip(labels, token_ids, strict=True):
            path = tuple(ids)
            if path in self.label_at:
                raise ValueError(f"labels {self.label_at[path]!r} and {label!r} tokenise identically")
            self.label_at[path] = label
            for depth in range(len(path)):
                kids = self.children.setdefault(path[:depth], [])
                if path[depth] not in kids:
                    kids.append(path[depth])
        self.max_tokens = max(len(ids) for ids in token_ids)
        self.n_nodes = sum(len(k) for k in self.children.values())

    def session(self, vocab_size: int, device: torch.device | str = "cpu") -> LabelTrie._Session:
        return LabelTrie._Session(self, vocab_size, device)

    def describe(self) -> dict[str, Any]:
        return {"kind": "label_trie", "labels": len(self.label_at), "nodes": self.n_nodes}

    class _Session:
        def __init__(self, trie: LabelTrie, vocab_size: int, device: torch.device | str) -> None:
            self.trie, self.vocab_size, self.device = trie, vocab_size, device

        def mask(self, generated: Sequence[Sequence[int] | None]) -> torch.Tensor:
            """``[rows, vocab]`` bool: the children of the node each row's tokens reached (None: all)."""
            return allowed_mask(
                generated, self.vocab_size, self.device, lambda ids: self.trie.children[tuple(ids)]
            )


# A greedy label is certified only when every other label's bound is below it by this many nats: float
# noise between the cached decoding steps and exact scoring's packed forward is ~1e-5.
CERTIFY_MARGIN = 1e-3


class LabelTriePredictor(GenerationPredictor):
    """Batched greedy decoding over the label trie; ``pred`` is always one of ``task.labels``.

    exact: certify each greedy label as the exact-scoring argmax and re-score the rows that cannot be
        certified (see the module docstring); False keeps plain greedy decoding.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: Task,
        batch_size: int = 16,
        shots: Any = (),
        max_prompt_tokens: int = 1024,
        prefix_cache: bool = True,
        name: str = "local",
        exact: bool = True,
    ) -> None:
        labels = task_labels(task, "label-trie decoding")
        self.exact = exact
        self.labels = labels
        self.trie = LabelTrie(labels, label_token_ids(tokenizer, labels))
        super().__init__(
            model,
            tokenizer,
            task,
            batch_size=batch_size,
            max_new_tokens=self.trie.max_tokens,
            shots=shots,
            stop_at_json_end=False,
            max_prompt_tokens=max_prompt_tokens,
            name=name,
            constraint=self.trie,
            prefix_cache=prefix_cache,
        )
        self.rescorer = LabelScorer(
            model,
            tokenizer,
            task,
            batch_size=batch_size,
            max_prompt_tokens=max_prompt_tokens,
            shots=shots,
            name=name,
            prefix_cache=prefix_cache,
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.pop("stop_at_json_end", None)
        out.pop("constraint", None)
        return {
            **out,
            "decoding": "label_trie_exact" if self.exact else "label_trie",
            "trie_nodes": self.trie.n_nodes,
        }

    def to_prediction(self, res: Generated, prompt_tokens: int, latency_ms: float) -> Prediction:
        label = self.trie.label_at[tuple(res.token_ids)]
        model_logprob = sum(res.model_logprobs)
        details: dict[str, Any] = {"logprob": sum(res.logprobs), "model_logprob": model_logprob}
        if self.exact:
            # The greedy label is the exact argmax when no untaken branch could hold a likelier label.
            runner_up_bound = max(res.alt_best, default=-math.inf)
            details["certified"] = runner_up_bound < model_logprob - CERTIFY_MARGIN
            others = torch.tensor(res.alt_logmass).logsumexp(0).item() if res.alt_logmass else -math.inf
            confidence = math.exp(model_logprob - float(np.logaddexp(model_logprob, others)))
        else:
            confidence = math.exp(details["logprob"])
        return Prediction(
            pred=label,
            confidence=confidence,
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(res.token_ids),
            raw_output=label,
            details=details,
        )

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        predictions = super().predict(examples)
        if not self.exact:
            return predictions
        unsure = [i for i, p in enumerate(predictions) if not p.details["certified"]]
        if unsure:
            rescored = self.rescorer.predict([examples[i] for i in unsure])
            for i, exact in zip(unsure, rescored, strict=True):
                greedy = predictions[i]
                predictions[i] = dataclasses.replace(
                    exact,
                    latency_ms=greedy.latency_ms + exact.latency_ms,
                    label_probs=None,  # certified rows have none: keep the output uniform
                    details={**greedy.details, "rescored": True, "greedy_pred": greedy.pred, **exact.details},
                )
        return predictions
