"""Classification by decoding over the trie of label token sequences: every output is exactly one label.

Each label is tokenised as in training (label tokens + EOS); the sequences form a prefix tree. Compared
with exact scoring (:mod:`slmforge.prediction.label_scoring`), which appends every label's tokens to
every prompt (banking77: 481 tokens per example), decoding over the trie runs only the nodes it needs.

``exact=True`` (the default) finds exactly the label exact scoring would, by best-first search over the
trie (:mod:`slmforge.prediction.trie_search`): a label's log-probability is at most any of its prefixes'
(log-probabilities only fall as a path grows), so a branch whose prefix is already below the best
complete label is never run. A confident (fine-tuned) model dives down its answer's path and stops, a
few cached steps per row (~6 tokens on banking77); an unsure one (a base model zero-shot) expands the
branches that could still win (~135 tokens of 481). Predictions equal exact scoring's (tested).

``exact=False`` decodes greedily: the batched, KV-cached loop of
:class:`~slmforge.prediction.generation.GenerationPredictor` with only the current trie node's children
allowed; once no row has a choice left, the forced rests of the labels are scored in one pass. It can
miss the argmax when an early token is misleading (an unsure model: 0.03 vs exact 0.38 zero-shot on
banking77), and costs a little less than the search for a confident model.

Confidence is the label's probability normalised over the label set, as with exact scoring, except
that branches never run count with their bound: ``p / (p + others found + bounds of the rest)``, a
lower bound on the exact value that is tight when a branch's mass ends in its labels (a fine-tuned
model) and exact when nothing was pruned. ``exact=False`` keeps the greedy path probability renormalised
over the trie children at each step (a proper distribution over labels). The full per-label
distribution is not computed (``label_probs`` is None); temperature scaling needs label scoring.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from slmforge.prediction.base import Prediction, eval_mode, length_sorted_batches
from slmforge.prediction.constrained import allowed_mask
from slmforge.prediction.generation import Generated, GenerationPredictor
from slmforge.prediction.label_scoring import label_token_ids, task_labels
from slmforge.prediction.trie_search import TrieSearch
from slmforge.tasks.base import Task


class LabelTrie:
    """The prefix tree of label token sequences, as a decoding constraint (``session().mask``)."""

    def __init__(self, labels: Sequence[str], token_ids: Sequence[Sequence[int]]) -> None:
        self.children: dict[tuple[int, ...], list[int]] = {}
        self.label_at: dict[tuple[int, ...], str] = {}
        self.under: dict[tuple[int, ...], list[int]] = {}  # node -> indices of the labels below it
        self.paths = [tuple(ids) for ids in token_ids]  # label index -> its token path
        for index, (label, ids) in enumerate(zip(labels, token_ids, strict=True)):
            path = tuple(ids)
            if path in self.label_at:
                raise ValueError(f"labels {self.label_at[path]!r} and {label!r} tokenise identically")
            self.label_at[path] = label
            for depth in range(len(path) + 1):
                self.under.setdefault(path[:depth], []).append(index)
            for depth in range(len(path)):
                kids = self.children.setdefault(path[:depth], [])
                if path[depth] not in kids:
                    kids.append(path[depth])
        self.max_tokens = max(len(ids) for ids in token_ids)
        # node -> the rest of the only label below it (nodes with one label and tokens still to come)
        self.forced: dict[tuple[int, ...], list[int]] = {}
        for node, below in self.under.items():
            if len(below) == 1 and len(node) < len(token_ids[below[0]]):
                self.forced[node] = list(token_ids[below[0]])[len(node) :]
        self.n_nodes = sum(len(k) for k in self.children.values())

    def session(
        self, vocab_size: int, device: torch.device | str = "cpu", contexts: Any = None
    ) -> LabelTrie._Session:
        return LabelTrie._Session(self, vocab_size, device)

    def describe(self) -> dict[str, Any]:
        return {"kind": "label_trie", "labels": len(self.label_at), "nodes": self.n_nodes}

    class _Session:
        def __init__(self, trie: LabelTrie, vocab_size: int, device: torch.device | str) -> None:
            self.trie, self.vocab_size, self.device = trie, vocab_size, device

        def forced(self, generated: Sequence[int]) -> list[int]:
            """The tokens that must follow ``generated`` when only one label lies below its node (empty
            when a choice remains): the generation loop scores them in one pass instead of one step each."""
            return self.trie.forced.get(tuple(generated), [])

        def mask(self, generated: Sequence[Sequence[int] | None], rows: Any = None) -> torch.Tensor:
            """``[rows, vocab]`` bool: the children of the node each row's tokens reached (None: all)."""
            return allowed_mask(
                generated, self.vocab_size, self.device, lambda ids: self.trie.children[tuple(ids)]
            )


class LabelTriePredictor(GenerationPredictor):
    """Classification by decoding over the label trie; ``pred`` is always one of ``task.labels``.

    exact: best-first search for exact scoring's argmax (:class:`TrieSearch`); False decodes greedily
        (the generation loop with the trie as its constraint: fewer tokens for an unsure model, and it
        can miss the argmax).
    search_nodes_per_step: the most open nodes a row expands per forward once it has a first answer
        (exact only): more means fewer forwards for an unsure model and more nodes a strict best-first
        order would have pruned.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        task: Task,
        batch_size: int = 16,
        shots: Any = (),
        max_prompt_tokens: int | None = None,
        prefix_cache: bool = True,
        name: str = "local",
        exact: bool = True,
        search_nodes_per_step: int = 16,
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
        self.search = TrieSearch(model, self.trie, self.pad_id, self.prefix, search_nodes_per_step)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        for key in ("stop_at_json_end", "constraint"):
            out.pop(key, None)
        if self.exact:
            out["search_nodes_per_step"] = self.search.nodes_per_step
        return {
            **out,
            "decoding": "label_trie_exact" if self.exact else "label_trie",
            "scoring": "raw",  # the search prunes on raw log-probabilities (factory: other scorings score)
            "trie_nodes": self.trie.n_nodes,
        }

    def to_prediction(self, res: Generated, prompt_tokens: int, latency_ms: float) -> Prediction:
        """A greedy-decoded row (``exact=False``)."""
        label = self.trie.label_at[tuple(res.token_ids)]
        logprob = sum(res.logprobs)
        return Prediction(
            pred=label,
            confidence=math.exp(logprob),
            latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(res.token_ids),
            raw_output=label,
            details={"logprob": logprob, "model_logprob": sum(res.model_logprobs)},
        )

    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        if not self.exact:
            return super().predict(examples)
        prompts = [self.prompt_ids(ex) for ex in examples]
        results: list[Prediction | None] = [None] * len(examples)
        with eval_mode(self.model):
            for idx, t0 in length_sorted_batches([len(p) for p in prompts], self.batch_size):
                found = self.search.search([prompts[i] for i in idx])
                elapsed_ms = (time.perf_counter() - t0) * 1000 / len(idx)
                for i, res in zip(idx, found, strict=True):
                    label = self.labels[res.label]
                    results[i] = Prediction(
                        pred=label,
                        # p / (p + a bound on the other labels' mass): exact when nothing was pruned.
                        confidence=math.exp(res.logprob - float(np.logaddexp(res.logprob, res.rest_logmass))),
                        latency_ms=elapsed_ms,
                        prompt_tokens=len(prompts[i]),
                        completion_tokens=len(self.trie.paths[res.label]),
                        raw_output=label,
                        details={"model_logprob": res.logprob, "searched_nodes": res.expanded},
                    )
        return [r for r in results if r is not None]
