"""The statistics a comparison needs before it names a winner: confidence intervals and paired tests.

Every function reads per-row scores from ``predictions.jsonl`` (the ``correct`` field: 1/0 for
classification, a fraction for extraction), aligned on row ids, so two predictors are compared on the very
same test rows. The bootstrap is the percentile bootstrap over rows (seeded: the same records give the same
interval); McNemar's test is the exact binomial test on the discordant pairs (scipy), the form recommended
when discordant pairs are few, which on a 100-row test split they usually are.

Groundwork for the comparison issue: the leaderboard does not use these yet (see the closing note).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from slmforge.errors import RecordError
from slmforge.records import PredictionRow

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A point estimate and its two-sided (1 - alpha) percentile-bootstrap interval."""

    estimate: float
    low: float
    high: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bootstrap_mean(
    scores: Sequence[float], alpha: float = 0.05, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """Mean of per-row scores (accuracy for 0/1 scores) with its percentile-bootstrap interval."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no scores to bootstrap")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(x.mean()), float(low), float(high))


def paired_rows(a: Sequence[PredictionRow], b: Sequence[PredictionRow]) -> tuple[np.ndarray, np.ndarray]:
    """Per-row scores of two predictors on the same rows, aligned on ``id``; different row sets are an error
    (a difference measured on different rows is not a paired difference)."""
    sa = {r.id: float(r.correct) for r in a}
    sb = {r.id: float(r.correct) for r in b}
    if set(sa) != set(sb):
        only_a, only_b = sorted(set(sa) - set(sb))[:3], sorted(set(sb) - set(sa))[:3]
        raise RecordError(
            f"the two predictors were evaluated on different rows (only in the first: {only_a}, only in the "
            f"second: {only_b}); compare predictors scored on the same test split"
        )
    ids = sorted(sa)
    return np.array([sa[i] for i in ids]), np.array([sb[i] for i in ids])


def paired_bootstrap_difference(
    a: Sequence[PredictionRow],
    b: Sequence[PredictionRow],
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Mean score of ``a`` minus that of ``b`` on the same rows, with a paired bootstrap interval (rows are
    resampled together, so the variance shared by both predictors cancels). An interval that contains 0
    means the difference is not significant at level ``alpha``."""
    sa, sb = paired_rows(a, b)
    return bootstrap_mean(sa - sb, alpha=alpha, resamples=resamples, seed=seed)


def mcnemar_p(a: Sequence[PredictionRow], b: Sequence[PredictionRow]) -> float:
    """Exact McNemar p-value for two classifiers on the same rows (``correct`` 1/0): a binomial test of the
    rows only one of them got right. 1.0 when they never disagree."""
    from scipy.stats import binomtest

    sa, sb = paired_rows(a, b)
    only_a = int(np.sum((sa >= 0.5) & (sb < 0.5)))
    only_b = int(np.sum((sb >= 0.5) & (sa < 0.5)))
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
