"""Classification by greedy decoding constrained to the trie of label token sequences.

Each label is tokenised as in training (label tokens + EOS); the sequences form a prefix tree. Decoding
runs the batched, KV-cached greedy loop of :class:`~slmforge.prediction.generation.GenerationPredictor`
with only the current trie node's children allowed, so every output is exactly one label and a batch
finishes after at most the longest label's token count (~5 steps for banking77). The prompt runs once
(its shared prefix once per evaluation, see :mod:`slmforge.prediction.prefix_cache`).

Compared with exact scoring (:mod:`slmforge.prediction.label_scoring`), which appends every label's
tokens to every prompt (77 banking77 labels ≈ 300 extra tokens per example), the trie costs a few
incremental steps. It is greedy: at each node it follows the most likely child, so it can miss the label
with the highest total log-probability when an early token is misleading. A confident fine-tuned model
almost never hits that case; measure on the task (``scripts/bench_eval_speed.py`` prints both).

Confidence is the path probability under the model's distribution renormalised over the trie children
at each step: a proper distribution over labels (the probabilities of all labels sum to one), so it can
be thresholded and calibrated like label scoring's. The full per-label distribution is not computed
(``label_probs`` is None); temperature scaling needs label scoring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from slmforge.prediction.base import Prediction
from slmforge.prediction.constrained import allowed_mask
from slmforge.prediction.generation import Generated, GenerationPredictor
from slmforge.prediction.label_scoring import label_token_ids, task_labels
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


class LabelTriePredictor(GenerationPredictor):
    """Batched greedy decoding over the label trie; ``pred`` is always one of ``task.labels``."""

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
    ) -> None:
        labels = task_labels(task, "label-trie decoding")
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

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.pop("stop_at_json_end", None)
        out.pop("constraint", None)
        return {**out, "decoding": "label_trie", "trie_nodes": self.trie.n_nodes}

    def to_prediction(self, res: Generated, prompt_tokens: int, latency_ms: float) -> Prediction:
        label = self.trie.label_at[tuple(res.token_ids)]
        total = sum(res.logprobs)
        return Prediction(
            pred=label,
            confidence=math.exp(total),
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(res.token_ids),
            raw_output=label,
            details={"logprob": total, "model_logprob": sum(res.model_logprobs)},
        )
