"""Classification by greedy decoding constrained to the trie of label token sequences.

Each label is tokenised as in training (label tokens + EOS); the sequences form a prefix tree. Decoding
runs the batched, KV-cached greedy loop of :class:`~slmforge.prediction.generation.GenerationPredictor`
with only the current trie node's children allowed, so every output is exactly one label. Once a row
reaches a node with a single label below it, the rest of that label is forced: once no row in the batch
has a choice left, the forced rests are scored together in one pass instead of one cached forward per
token (banking77's labels are 7.2 tokens long on average with EOS, but 2.9 steps decide them, at most 9). The prompt runs
once (its shared prefix once per evaluation, see :mod:`slmforge.prediction.prefix_cache`).

Compared with exact scoring (:mod:`slmforge.prediction.label_scoring`), which appends every label's
tokens to every prompt (77 banking77 labels ≈ 300 extra tokens per example), the trie costs a few
incremental steps. Greedy decoding alone (``exact=False``) can miss the label with the highest total
log-probability when an early token is misleading. With ``exact=True`` (the default) each result is
checked instead: every other label leaves the greedy path at exactly one step, through an allowed token
greedy decoding did not take, so its log-probability is at most that step's path log-probability plus
the token's (log-probabilities only fall as a path grows). When every such branch bound is below the
greedy label's own log-probability (by a margin that absorbs float noise), the greedy label is
*certified*: exactly the argmax exact scoring would return. Otherwise only the labels in the branches
that could still beat it are scored exactly (:meth:`LabelScorer.score_batch` with a label subset), and
the best of those wins. Predictions therefore equal exact scoring's (tested); a confident model pays a
few cached steps per row, an unsure one a partial scoring pass on top.

Confidence is the label's probability normalised over the label set, as with exact scoring, except
that branches never scored count with their bound: ``p / (p + scored others + bounds of the rest)``, a
lower bound on the exact value that is tight when a branch's mass ends in its labels (a fine-tuned
model) and exact when nothing was pruned. ``exact=False`` keeps the greedy path probability renormalised
over the trie children at each step (a proper distribution over labels). The full per-label
distribution is not computed (``label_probs`` is None); temperature scaling needs label scoring.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from slmforge.prediction.base import Prediction, eval_mode, length_sorted_batches
from slmforge.prediction.constrained import allowed_mask
from slmforge.prediction.generation import Generated, GenerationPredictor
from slmforge.prediction.label_scoring import LabelScorer, label_token_ids, task_labels
from slmforge.tasks.base import Task


class LabelTrie:
    """The prefix tree of label token sequences, as a decoding constraint (``session().mask``)."""

    keeps_alternatives = True  # few allowed tokens per step: decoding records the untaken ones (certificate)

    def __init__(self, labels: Sequence[str], token_ids: Sequence[Sequence[int]]) -> None:
        self.children: dict[tuple[int, ...], list[int]] = {}
        self.label_at: dict[tuple[int, ...], str] = {}
        self.under: dict[tuple[int, ...], list[int]] = {}  # node -> indices of the labels below it
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

    def session(self, vocab_size: int, device: torch.device | str = "cpu") -> LabelTrie._Session:
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

        def mask(self, generated: Sequence[Sequence[int] | None]) -> torch.Tensor:
            """``[rows, vocab]`` bool: the children of the node each row's tokens reached (None: all)."""
            return allowed_mask(
                generated, self.vocab_size, self.device, lambda ids: self.trie.children[tuple(ids)]
            )


# A greedy label is certified only when every other label's bound is below it by this many nats: float
# noise between the cached decoding steps and exact scoring's packed forward is ~1e-5.
CERTIFY_MARGIN = 1e-3
_RESCORE = "_rescore"  # private detail key: what an unsure row re-scores


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

    def _bounds(self, res: Generated) -> tuple[float, list[int], float]:
        """The greedy label's log-probability, the labels that could still beat it (their branch's bound
        reaches it: to be scored exactly), and the log of the mass bound of the branches that cannot."""
        greedy = sum(res.model_logprobs)
        candidates: list[int] = []
        pruned: list[float] = []
        for step, alternatives in enumerate(res.alternatives):
            for tok, bound in alternatives:
                if bound >= greedy - CERTIFY_MARGIN:
                    candidates += self.trie.under[(*res.token_ids[:step], tok)]
                else:
                    pruned.append(bound)
        pruned_mass = torch.tensor(pruned).logsumexp(0).item() if pruned else -math.inf
        return greedy, candidates, pruned_mass

    def to_prediction(self, res: Generated, prompt_tokens: int, latency_ms: float) -> Prediction:
        label = self.trie.label_at[tuple(res.token_ids)]
        details: dict[str, Any] = {"logprob": sum(res.logprobs), "model_logprob": sum(res.model_logprobs)}
        confidence = math.exp(details["logprob"])
        if self.exact:
            greedy, candidates, pruned_mass = self._bounds(res)
            details["certified"] = not candidates
            if candidates:  # what predict() re-scores; removed before the prediction leaves
                details[_RESCORE] = (candidates, pruned_mass)
            # p / (p + the other branches' mass bound): every other label lies in exactly one branch.
            confidence = math.exp(greedy - float(np.logaddexp(greedy, pruned_mass)))
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
        unsure = [i for i, p in enumerate(predictions) if _RESCORE in p.details]
        if not unsure:
            return predictions
        plans = {i: predictions[i].details.pop(_RESCORE) for i in unsure}
        prompts = {i: self.prompt_ids(examples[i]) for i in unsure}
        with eval_mode(self.model):
            for batch, t0 in length_sorted_batches([len(prompts[i]) for i in unsure], self.batch_size):
                rows = [unsure[b] for b in batch]
                # Score the greedy label and every label whose branch could beat it (their union over
                # the batch: scoring extra labels cannot change an exact argmax).
                union = sorted(
                    {j for i in rows for j in plans[i][0]}
                    | {self.labels.index(predictions[i].pred) for i in rows}
                )
                scores = self.rescorer.score_batch([prompts[i] for i in rows], union).cpu()
                elapsed_ms = (time.perf_counter() - t0) * 1000 / len(rows)
                for row, i in enumerate(rows):
                    best = int(scores[row].argmax())
                    best_logp = float(scores[row, best])
                    norm = float(np.logaddexp(scores[row].logsumexp(0).item(), plans[i][1]))
                    greedy, label = predictions[i], self.labels[union[best]]
                    predictions[i] = dataclasses.replace(
                        greedy,
                        pred=label,
                        raw_output=label,
                        confidence=math.exp(best_logp - norm),
                        latency_ms=greedy.latency_ms + elapsed_ms,
                        completion_tokens=len(self.rescorer.label_ids[union[best]]),
                        details={
                            **greedy.details,
                            "greedy_pred": greedy.pred,
                            "rescored_labels": len(union),
                            "model_logprob": best_logp,
                        },
                    )
        return predictions
