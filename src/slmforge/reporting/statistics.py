"""The statistics a comparison needs before it names a winner: confidence intervals and paired tests.

Every function reads per-row scores from ``predictions.jsonl`` (the ``correct`` field: 1/0 for
classification, a fraction for extraction), aligned on row ids, so two predictors are compared on the very
same test rows. The bootstrap is the percentile bootstrap over rows (seeded: the same records give the same
interval); McNemar's test is the exact binomial test on the discordant pairs (scipy), the form recommended
when discordant pairs are few, which on a 100-row test split they usually are.

Several seeds (``seeds=[0,1,2]`` or ``-m seed=0,1,2``): :func:`metric_interval` and :func:`paired_difference`
take ``{seed: rows}``; rows are paired on ids *within* a seed only (each seed may draw its own test split),
and seeds are resampled on top of rows (a two-level bootstrap) so seed-to-seed spread widens the interval.
The leaderboard (``reporting/leaderboard.py``) shows these next to each predictor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
    sa, sb = paired_rows(a, b)
    return _binomial_p(int(np.sum((sa >= 0.5) & (sb < 0.5))), int(np.sum((sb >= 0.5) & (sa < 0.5))))


# ---- several seeds: the statistics the leaderboard shows --------------------------------------------------------

SeedRows = Mapping[Any, Sequence[PredictionRow]]
"""One predictor's prediction rows per seed (``{seed: rows}``): the unit the leaderboard aggregates."""

TWO_LEVEL = "two-level bootstrap (seeds, then test rows within each seed)"
ROW_BOOTSTRAP = "percentile bootstrap over test rows"
_CHUNK = 4_000_000  # weights per resampling block (B x n floats): bounds memory on large test splits


@dataclass(frozen=True)
class Estimate:
    """A metric averaged over seeds with its (1 - alpha) interval, and how it was computed.

    ``method`` names the resampling (:data:`ROW_BOOTSTRAP` for one seed, :data:`TWO_LEVEL` for several);
    ``note`` says when the interval is of a stand-in (mean per-row ``correct``) rather than the metric itself.
    """

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_rows: int
    method: str
    note: str = ""


@dataclass(frozen=True)
class Difference:
    """``a - b`` on the same test rows (paired within each shared seed), its interval and McNemar's p.

    ``significant`` is true when the interval excludes 0. ``mcnemar_p`` is None when the metric is not
    accuracy on 0/1 rows (McNemar tests paired right/wrong outcomes, nothing else).
    """

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_rows: int
    mcnemar_p: float | None
    method: str

    @property
    def significant(self) -> bool:
        return not (self.low <= 0.0 <= self.high)


class _Scorer:
    """The primary metric over bootstrap-weighted rows, vectorised over resamples.

    ``accuracy`` (and any metric without an exact row-level form) is the weighted mean of ``correct``;
    ``macro_f1`` is recomputed from gold/pred per resample (F1 per class over the record's label list, 0
    when 0/0, averaged over all classes: the same definition as ``metrics/classification.py``).
    """

    def __init__(self, metric: str, labels: Sequence[str] | None = None) -> None:
        self.metric = metric
        self.macro = metric == "macro_f1"
        self.labels = [str(x) for x in labels or []]
        self.note = (
            ""
            if metric in ("accuracy", "macro_f1")
            else f"interval of the mean per-row score (`correct`), which stands in for {metric}"
        )

    def prepare(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        correct = np.array([float(r.correct) for r in rows], dtype=np.float64)
        if not self.macro:
            return {"n": len(rows), "correct": correct}
        labels = self.labels or sorted({str(r.gold) for r in rows} | {str(r.pred) for r in rows})
        index = {lab: i for i, lab in enumerate(labels)}
        c = len(labels)
        gold = np.array([index.get(str(r.gold), c) for r in rows])
        pred = np.array([index.get(str(r.pred), c) for r in rows])  # c: outside the label list
        return {"n": len(rows), "correct": correct, "gold": gold, "pred": pred, "c": c}

    def score(self, data: dict[str, Any], w: np.ndarray) -> np.ndarray:
        """Metric per resample; ``w`` is (resamples, n) row counts."""
        n = data["n"]
        if not self.macro:
            return w @ data["correct"] / n
        c, gold, pred = data["c"], data["gold"], data["pred"]
        hit = gold == pred
        # Per-class sums of row weights: (c + 1) columns, the last one for out-of-list labels (dropped).
        support = _class_sums(w, gold, c)
        predicted = _class_sums(w, pred, c)
        tp = _class_sums(w * hit, gold, c)
        denom = support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)
        return f1.mean(axis=1)


def _class_sums(w: np.ndarray, cls: np.ndarray, c: int) -> np.ndarray:
    from scipy.sparse import csr_matrix

    n = cls.size
    onehot = csr_matrix((np.ones(n), (np.arange(n), cls)), shape=(n, c + 1))
    return np.asarray((onehot.T @ w.T).T)[:, :c]


def _row_weights(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """``size`` bootstrap resamples of ``n`` rows as (size, n) counts (how often each row was drawn)."""
    idx = rng.integers(0, n, size=(size, n)) + (np.arange(size) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def _resampled(rng: np.random.Generator, n: int, size: int, stat: Any) -> np.ndarray:
    block = max(1, _CHUNK // max(n, 1))
    out = [stat(_row_weights(rng, n, min(block, size - i))) for i in range(0, size, block)]
    return np.concatenate(out) if out else np.empty(0)


def _two_level(
    units: Sequence[tuple[int, Any]], alpha: float, resamples: int, seed: int
) -> tuple[float, float, str]:
    """Percentile interval of the seed-mean of ``stat`` (one ``(n_rows, stat)`` unit per seed).

    One seed: rows are resampled. Several: each replicate draws as many seeds as there are, with
    replacement, then resamples the rows of each drawn seed independently, so both the seed-to-seed
    spread (training, shots, test draw) and the finite test split widen the interval.
    """
    rng = np.random.default_rng(seed)
    if len(units) == 1:
        n, stat = units[0]
        reps = _resampled(rng, n, resamples, stat)
        method = ROW_BOOTSTRAP
    else:
        s = len(units)
        picks = rng.integers(0, s, size=(resamples, s))
        vals = np.empty((resamples, s))
        for i, (n, stat) in enumerate(units):
            mask = picks == i
            k = int(mask.sum())
            if k:
                vals[mask] = _resampled(rng, n, k, stat)
        reps = vals.mean(axis=1)
        method = TWO_LEVEL
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high), method


def _seeds_of(by_seed: SeedRows, what: str) -> list[Any]:
    seeds = [s for s, rows in by_seed.items() if len(rows)]
    if not seeds:
        raise ValueError(f"{what}: no prediction rows")
    return sorted(seeds, key=str)


def metric_interval(
    by_seed: SeedRows,
    metric: str = "accuracy",
    labels: Sequence[str] | None = None,
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Estimate:
    """One predictor's metric, averaged over its seeds, with a 95% (``1 - alpha``) interval.

    The estimate is the mean over seeds of the metric on each seed's rows; the interval is the percentile
    bootstrap over rows (one seed) or the two-level bootstrap (several seeds; see :func:`_two_level`).
    Seeded, so the same rows always give the same interval.
    """
    scorer = _Scorer(metric, labels)
    seeds = _seeds_of(by_seed, "metric_interval")
    data = [scorer.prepare(by_seed[s]) for s in seeds]
    ones = [np.ones((1, d["n"])) for d in data]
    point = round(float(np.mean([scorer.score(d, o)[0] for d, o in zip(data, ones, strict=True)])), 12)
    units = [(d["n"], lambda w, d=d: scorer.score(d, w)) for d in data]
    low, high, method = _two_level(units, alpha, resamples, seed)
    return Estimate(point, low, high, len(seeds), sum(d["n"] for d in data), method, scorer.note)


def _aligned(a: Sequence[PredictionRow], b: Sequence[PredictionRow]) -> tuple[list[PredictionRow], ...]:
    by_id = {r.id: r for r in b}
    if {r.id for r in a} != set(by_id):
        paired_rows(a, b)  # raises the RecordError that names the differing ids
    return list(a), [by_id[r.id] for r in a]


def paired_difference(
    a: SeedRows,
    b: SeedRows,
    metric: str = "accuracy",
    labels: Sequence[str] | None = None,
    alpha: float = 0.05,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> Difference:
    """``metric(a) - metric(b)`` over the seeds both were evaluated with, paired on row ids within a seed.

    Rows are never paired across seeds (each seed may draw its own test split). Within a seed both
    predictors are scored on the same resampled rows, so the variance they share cancels; across seeds the
    difference is averaged and resampled as in :func:`metric_interval`. McNemar's exact test (accuracy on
    0/1 rows only) pools the discordant pairs of every shared seed: each (seed, row) is one paired trial.
    Raises ValueError when no seed is shared and RecordError when a shared seed's row ids differ.
    """
    shared = [s for s in _seeds_of(a, "paired_difference") if s in b and len(b[s])]
    if not shared:
        raise ValueError("the two predictors share no seed; their rows cannot be paired")
    scorer = _Scorer(metric, labels)
    units, points, n_rows = [], [], 0
    only_a = only_b = 0
    binary = True
    for s in shared:
        ra, rb = _aligned(a[s], b[s])
        da, db = scorer.prepare(ra), scorer.prepare(rb)
        n = da["n"]
        n_rows += n
        ones = np.ones((1, n))
        points.append(float(scorer.score(da, ones)[0] - scorer.score(db, ones)[0]))
        units.append((n, lambda w, da=da, db=db: scorer.score(da, w) - scorer.score(db, w)))
        ca, cb = da["correct"], db["correct"]
        binary &= bool(np.isin(ca, (0.0, 1.0)).all() and np.isin(cb, (0.0, 1.0)).all())
        only_a += int(np.sum((ca >= 0.5) & (cb < 0.5)))
        only_b += int(np.sum((cb >= 0.5) & (ca < 0.5)))
    low, high, method = _two_level(units, alpha, resamples, seed)
    p = None
    if metric == "accuracy" and binary:
        p = _binomial_p(only_a, only_b)
    return Difference(round(float(np.mean(points)), 12), low, high, len(shared), n_rows, p, method)


def _binomial_p(only_a: int, only_b: int) -> float:
    """McNemar's exact test from its discordant counts (1.0 when the two never disagree)."""
    from scipy.stats import binomtest

    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)
