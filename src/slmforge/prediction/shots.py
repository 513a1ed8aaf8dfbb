"""Per-example few-shot selection: the k training examples most similar to the input.

TF-IDF over word uni- and bigrams with cosine similarity: cheap, deterministic, and good at finding
examples that share the request's vocabulary. Shots always come from the training split, so they can
never leak evaluation examples; an example identical to the input (same id or same text) is skipped.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from slmforge.errors import ConfigError

SHOT_SELECTIONS = ("random", "stratified", "similar")


class SimilarShots:
    """Callable: ``shots(example) -> list of k training examples``, most similar first."""

    def __init__(self, train: Sequence[dict[str, Any]], k: int) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.train = list(train)
        self.k = k
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        self.matrix = self.vectorizer.fit_transform([ex["text"] for ex in self.train])

    def __len__(self) -> int:
        return self.k

    def __call__(self, example: dict[str, Any]) -> list[dict[str, Any]]:
        sims = (self.matrix @ self.vectorizer.transform([example["text"]]).T).toarray().ravel()
        order = np.argsort(-sims, kind="stable")
        out = []
        for i in order:
            cand = self.train[int(i)]
            if cand.get("id") == example.get("id") or cand["text"] == example["text"]:
                continue
            out.append(cand)
            if len(out) == self.k:
                break
        return out


def shots_for(shots: Any, example: dict[str, Any]) -> list[dict[str, Any]]:
    """Fixed shots (a list) or per-example shots (a callable such as :class:`SimilarShots`)."""
    return list(shots(example)) if callable(shots) else list(shots)


def select_shots(
    train: Sequence[dict[str, Any]], k: int, how: str, seed: int, target_key: str = "label"
) -> Any:
    """k in-context examples, always from the training split (so they can never leak test examples).

    random: a seeded sample; stratified: one example per label, cycling through labels in sorted order;
    similar: per input, the k most similar training examples (a :class:`SimilarShots` callable).
    """
    if how not in SHOT_SELECTIONS:
        raise ConfigError(f"shot_selection={how} is not one of {list(SHOT_SELECTIONS)}")
    if k <= 0:
        return []
    if how == "similar":
        return SimilarShots(train, k)
    rng = random.Random(seed)
    if how == "random" or target_key != "label":
        return rng.sample(list(train), min(k, len(train)))
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ex in train:
        by_label[ex["label"]].append(ex)
    pools = {lab: rng.sample(rows, len(rows)) for lab, rows in sorted(by_label.items())}
    out: list[dict[str, Any]] = []
    while len(out) < k and any(pools.values()):
        for lab in sorted(pools):
            if pools[lab] and len(out) < k:
                out.append(pools[lab].pop())
    return out
