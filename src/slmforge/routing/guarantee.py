"""Thresholds with a finite-sample guarantee (Learn-then-Test), and the field's routing metrics.

**The guarantee.** A threshold chosen because it met the target on a few validation rows is a point
estimate: on new traffic it misses the target about half the time, and far more often when the
validation split is small (BENCHMARKS.md: 0.95 on 40 validation rows, 0.767 on test). Learn-then-Test
(Angelopoulos, Bates, Candès, Jordan, Lei, 2021) turns the choice into multiple testing:

- one null hypothesis per candidate threshold ``t``: *H0_t: the routed quality at t is below the
  target*, i.e. ``E[score] < target`` for a new request from the same distribution;
- a p-value for each from the calibration rows' per-row routed scores: the exact binomial tail
  ``P(Binomial(n, target) >= k)`` when scores are 0/1 (``k`` rows right), else the Hoeffding–Bentkus
  bound (Bates et al. 2021, RCPS) for scores in [0, 1];
- **fixed-sequence testing**: the candidates are ordered *before looking at the data* from most to least
  escalation (a fixed grid of thresholds, descending) and tested in that order at level ``delta``,
  stopping at the first one not rejected. This controls the family-wise error at ``delta`` without any
  multiplicity correction, so a fine grid costs nothing;
- the chosen threshold is the least-escalating one rejected (and so every one before it). With
  probability >= 1 - delta over the calibration draw, *every* rejected threshold — the chosen one
  included — has expected routed quality >= target on new data from the same distribution.

The candidate grid is fixed (:data:`GRID`), not the calibration rows' own confidences, because a
data-dependent sequence would void fixed-sequence testing. What the guarantee does **not** say: the mean
over one finite test split is itself a sample, so it can fall below the target even when the guarantee
holds (rarely when the chosen threshold has a margin, which LTT usually leaves).

If not even the first hypothesis (escalate everything) is rejected, the target cannot be certified with
this many calibration rows: the caller escalates everything and warns; it never picks silently.

**Field metrics** (:func:`field_metrics`), RouteLLM's (Ong et al. 2024) definitions:

- ``PGR(s) = (q(s) - q_cheap) / (q_exp - q_cheap)``: the share of the quality gap between the cheap-only
  and the expensive-only predictor recovered when a share ``s`` of requests is escalated;
- ``APGR = ∫_0^1 PGR(s) ds``, integrated with the trapezoid rule over the swept points ordered by
  escalation share (exact for the piecewise-linear curve through them, which randomising between two
  adjacent thresholds achieves); (0, cheap-only) and (1, expensive-only) close the curve when missing;
- ``CPT(x)``: the smallest escalation share among the swept thresholds whose PGR >= x (RouteLLM's
  "call-performance threshold"). The issue's wording, "the share of expensive calls needed to reach x%
  of the expensive predictor's quality", is read as x% of the *gap* (RouteLLM's definition); x% of the
  expensive predictor's absolute quality is reached by the cheap model alone whenever q_cheap >= x·q_exp,
  which would make CPT(50%) zero for any usable SLM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import beta, binom

from slmforge.routing.errors import RoutingError

# The fixed candidate thresholds for fixed-sequence testing: 0, 0.001, ..., 1.0. Fixed before any data is
# seen (as the method requires); a finer grid costs no power under fixed-sequence testing, only time.
GRID = np.round(np.linspace(0.0, 1.0, 1001), 3)
# Above any confidence, including 1.0: escalate everything (same value as threshold.ALL_THRESHOLD).
ALL = 1.0 + 1e-9
GUARANTEES = ("ltt", "none")
EXPECTATION_NOTE = (
    "the guarantee is on the expected routed quality over new requests drawn like the calibration rows "
    "(exchangeable with them); a finite test split scatters around that expectation, and a shift between "
    "validation and test (or production) traffic voids it"
)
CPT_LEVELS = (0.5, 0.8, 0.95)


def check_target_delta(target: float | None, delta: float) -> None:
    """RoutingError unless ``target`` is a quality in [0, 1] (a mean of per-row scores) and 0 < delta < 1."""
    if target is not None and (isinstance(target, bool) or not (0.0 <= float(target) <= 1.0)):
        raise RoutingError(
            f"routing.target={target} is not a quality in [0, 1]: the routed metric is a mean of per-row "
            "scores in [0, 1]; set routing.target to e.g. 0.9"
        )
    if isinstance(delta, bool) or not (0.0 < float(delta) < 1.0):
        raise RoutingError(
            f"routing.delta={delta} must lie in (0, 1): the guarantee holds with probability 1 - delta "
            "(e.g. routing.delta=0.1)"
        )


def resolve_options(guarantee: str | None, target: float | None, delta: float, select_on: str) -> str:
    """The guarantee method routing uses (``ltt`` by default when a target is set, else ``none``), after
    checking every option the two- and multi-tier routers share; RoutingError naming the bad one."""
    if select_on not in ("auto", "validation", "split"):
        raise RoutingError(f"routing.select_on must be 'auto', 'validation' or 'split', got {select_on!r}")
    method = guarantee or ("ltt" if target is not None else "none")
    if method not in GUARANTEES:
        raise RoutingError(f"routing.guarantee={method!r}: expected one of {list(GUARANTEES)}")
    if method == "ltt" and target is None:
        raise RoutingError("routing.guarantee=ltt needs routing.target (the quality to guarantee), e.g. 0.9")
    check_target_delta(target, delta)
    return method


def is_binary(scores: np.ndarray) -> bool:
    """True when every per-row score is exactly 0 or 1 (accuracy): then the exact binomial test applies."""
    return bool(np.all((scores == 0.0) | (scores == 1.0)))


def binomial_pvalues(k_correct: np.ndarray, n: int, target: float) -> np.ndarray:
    """Exact p-values of H0: quality < target, from ``k_correct`` right out of ``n`` (0/1 scores).

    Under H0 the count right is stochastically at most Binomial(n, target) (the boundary is the least
    favourable case), so ``p = P(Binomial(n, target) >= k)``.
    """
    k = np.asarray(k_correct, dtype=np.float64)
    if target <= 0.0:  # "quality < 0" is impossible: always rejected
        return np.zeros_like(k)
    return np.asarray(binom.sf(np.rint(k) - 1, n, target), dtype=np.float64)


def _h1(a: np.ndarray, b: float) -> np.ndarray:
    """KL divergence between Bernoulli(a) and Bernoulli(b), elementwise in ``a``."""
    a = np.clip(a, 1e-12, 1 - 1e-12)
    return a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b))


def hoeffding_bentkus_pvalues(means: np.ndarray, n: int, target: float) -> np.ndarray:
    """P-values of H0: E[score] < target for scores in [0, 1], from their sample ``means`` over ``n`` rows.

    Stated for the loss ``1 - score`` with level ``alpha = 1 - target`` (Bates et al. 2021, eq. for the
    Hoeffding–Bentkus bound): ``p = min(exp(-n·h1(min(R, alpha), alpha)), e·P(Binomial(n, alpha) <= ceil(n·R)))``
    with ``R`` the mean loss. Valid for any distribution on [0, 1]; looser than the binomial test on 0/1 data.
    """
    alpha = 1.0 - float(target)
    risk = 1.0 - np.asarray(means, dtype=np.float64)
    if alpha <= 0.0:  # target 1: only a perfect score could certify it, and no finite sample can
        return np.ones_like(risk)
    if alpha >= 1.0:  # target 0: always met
        return np.zeros_like(risk)
    hoeffding = np.exp(-n * _h1(np.minimum(risk, alpha), alpha))
    bentkus = math.e * binom.cdf(np.ceil(n * risk - 1e-9), n, alpha)
    return np.minimum(np.minimum(hoeffding, bentkus), 1.0)


def pvalues(score_sums: np.ndarray, n: int, target: float, binary: bool) -> np.ndarray:
    """The p-value of each hypothesis given the sum of its per-row routed scores over ``n`` rows."""
    sums = np.asarray(score_sums, dtype=np.float64)
    if binary:
        return binomial_pvalues(sums, n, target)
    return hoeffding_bentkus_pvalues(sums / n, n, target)


def fixed_sequence(p: np.ndarray, delta: float) -> int:
    """How many hypotheses, tested in order, are rejected at ``delta`` before the first that is not."""
    fails = np.flatnonzero(np.asarray(p) > delta)
    return int(fails[0]) if fails.size else len(p)


def descending_grid() -> np.ndarray:
    """The fixed sequence of thresholds: escalate everything first, then :data:`GRID` from 1.0 down to 0."""
    return np.concatenate([[ALL], GRID[::-1]])


def routed_score_sums(
    conf: np.ndarray,
    cheap_score: np.ndarray,
    exp_score: np.ndarray,
    thresholds: np.ndarray,
    forced: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(score_sum, n_escalated)`` for each threshold of a cheap → expensive route, vectorised.

    A row escalates when ``forced`` (a tier rule) or its confidence is NaN or below the threshold.
    Sorting once and counting with ``searchsorted`` makes a 1,000-threshold sweep O(n log n + T).
    """
    conf = np.asarray(conf, dtype=np.float64)
    forced = np.zeros(len(conf), bool) if forced is None else np.asarray(forced, bool)
    always = forced | np.isnan(conf)
    free = ~always
    base = float(exp_score[always].sum())
    c_f, cs_f, es_f = conf[free], cheap_score[free], exp_score[free]
    order = np.argsort(c_f, kind="stable")
    c_sorted = c_f[order]
    # Rows with conf < t are the first m in sorted order: they take the expensive score, the rest the cheap.
    cum_exp = np.concatenate([[0.0], np.cumsum(es_f[order])])
    cum_cheap = np.concatenate([[0.0], np.cumsum(cs_f[order])])
    m = np.searchsorted(c_sorted, np.asarray(thresholds, dtype=np.float64), side="left")
    sums = base + cum_exp[m] + (cum_cheap[-1] - cum_cheap[m])
    return sums, m + int(always.sum())


@dataclass
class Guarantee:
    """How the threshold was chosen and what is guaranteed about it.

    ``method``: ``ltt`` or ``none``. ``valid``: the guarantee holds as stated (False when the calibration
    rows are the evaluated split itself, or when no guarantee was asked for). ``n_rejected``: hypotheses
    rejected along the fixed sequence (0: nothing certified, everything escalated). ``p_value``: the chosen
    hypothesis's. ``paths``: fixed sequences tested (Bonferroni across them at ``delta / paths``; 1 for a
    two-model route). ``observed_metric``: the chosen policy's quality on the evaluated split, filled by
    the caller; ``met_on_test`` whether it reached the target there.
    """

    method: str
    target: float | None
    delta: float
    n_calibration: int
    calibrated_on: str
    p_values: str = ""
    valid: bool = False
    n_hypotheses: int = 0
    n_rejected: int = 0
    p_value: float | None = None
    paths: int = 1
    fallback_all: bool = False
    statement: str = ""
    assumptions: list[str] = field(default_factory=list)
    observed_metric: float | None = None
    observed_on: str | None = None
    met_on_test: bool | None = None
    observed_ci95: list[float] | None = None
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def policy_fields(self) -> dict[str, Any]:
        """What a routing policy file keeps of the guarantee (a serving process reads these, not the rest)."""
        return {
            "method": self.method,
            "target": self.target,
            "delta": self.delta,
            "valid": self.valid,
            "statement": self.statement,
        }

    def observed(self, metric: float, split: str, n: int, metric_name: str, binary: bool = True) -> str:
        """Record the evaluated split's quality and return the one line every report prints.

        For 0/1 scores the line carries the Clopper–Pearson 95% interval of the observed accuracy: the
        test split is a finite sample too, so an observed value a little below a guaranteed target is
        consistent with the guarantee when the interval still reaches the target.
        """
        self.observed_metric, self.observed_on = float(metric), split
        self.met_on_test = None if self.target is None else bool(metric >= self.target - 1e-12)
        ci = ""
        if binary and n > 0:
            lo, hi = clopper_pearson(round(metric * n), n)
            self.observed_ci95 = [lo, hi]
            ci = f", 95% CI [{lo:.3f}, {hi:.3f}]"
        self.summary = f"{self.statement}; observed on {split}: {metric_name} {metric:.4f} (n={n}{ci})"
        return self.summary


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion ``k / n``."""
    a = (1 - level) / 2
    lo = 0.0 if k <= 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k >= n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def statement(
    method: str,
    metric_name: str,
    target: float | None,
    delta: float,
    n: int,
    p_kind: str,
    calibrated_on: str,
    valid: bool,
    paths: int = 1,
    fallback_all: bool = False,
) -> str:
    """The guarantee sentence for routing.json, routing.md and the CLI."""
    if method == "none" or target is None:
        return f"no guarantee: threshold chosen by point estimate on {calibrated_on} ({n} rows)"
    p_text = "binomial p-values" if p_kind == "binomial" else "Hoeffding–Bentkus p-values"
    seq = "fixed sequence" if paths == 1 else f"fixed sequence along {paths} paths, Bonferroni across them"
    how = f"Learn-then-Test, {seq}, {p_text}, n={n} calibration rows"
    if not valid:
        return (
            f"NO GUARANTEE: Learn-then-Test ran on the evaluated split itself ({calibrated_on}, "
            f"select_on=split), so the reported quality is measured on the rows that chose the threshold ({how})"
        )
    if fallback_all:
        return (
            f"not certified: no threshold passed at delta={delta:g} ({how}); everything escalated to the most "
            f"expensive predictor, whose {metric_name} is not itself guaranteed >= {target:.4f}"
        )
    return (
        f"guaranteed: routed {metric_name} >= {target:.4f} with probability >= {1 - delta:.2f} ({how}; "
        "expected over new requests from the calibration rows' distribution)"
    )


def ltt_two_tier(
    conf: np.ndarray,
    cheap_score: np.ndarray,
    exp_score: np.ndarray,
    target: float,
    delta: float,
    forced: np.ndarray | None = None,
) -> tuple[float, int, float | None, np.ndarray, str]:
    """Learn-then-Test for a cheap → expensive route on calibration arrays.

    Returns ``(threshold, n_rejected, p_value_of_chosen, p_values, p_kind)``; ``threshold`` is
    :data:`ALL` (escalate everything) when nothing is rejected.
    """
    check_target_delta(target, delta)
    n = len(conf)
    if n == 0:
        raise RoutingError("no calibration rows for Learn-then-Test")
    scores = np.concatenate([cheap_score, exp_score])
    if np.any(scores < 0) or np.any(scores > 1) or not np.all(np.isfinite(scores)):
        raise RoutingError("per-row scores ('correct') must lie in [0, 1] for the guarantee's p-values")
    binary = is_binary(scores)
    seq = descending_grid()
    sums, _ = routed_score_sums(conf, cheap_score, exp_score, seq, forced)
    p = pvalues(sums, n, target, binary)
    k = fixed_sequence(p, delta)
    kind = "binomial" if binary else "hoeffding_bentkus"
    if k == 0:
        return ALL, 0, float(p[0]), p, kind
    return float(seq[k - 1]), k, float(p[k - 1]), p, kind


def point_estimate_two_tier(
    conf: np.ndarray,
    cheap_score: np.ndarray,
    exp_score: np.ndarray,
    target: float,
    forced: np.ndarray | None = None,
) -> float:
    """The old selection on the same grid: the least-escalating threshold whose calibration mean >= target
    (no guarantee; :data:`ALL` when none). For comparisons and the simulation test."""
    seq = descending_grid()
    sums, _ = routed_score_sums(conf, cheap_score, exp_score, seq, forced)
    ok = np.flatnonzero(sums / len(conf) >= target - 1e-12)
    return float(seq[ok.max()]) if ok.size else ALL


# -- field metrics ---------------------------------------------------------------------------------------


def field_metrics(
    curve: Sequence[tuple[float, float]], q_cheap: float, q_exp: float, levels: Sequence[float] = CPT_LEVELS
) -> dict[str, Any]:
    """APGR and CPT(levels) of a quality-vs-escalation-share curve (RouteLLM's definitions, module doc).

    ``curve``: ``(escalation_share, quality)`` points. None values when the expensive predictor is no
    better than the cheap one (the gap, PGR's denominator, is not positive).
    """
    out: dict[str, Any] = {
        "q_cheap": q_cheap,
        "q_expensive": q_exp,
        "apgr": None,
        "cpt": {f"{round(100 * x)}%": None for x in levels},
        "definition": (
            "PGR(s) = (q(s) - q_cheap) / (q_exp - q_cheap); APGR = trapezoid integral of PGR over escalation "
            "share 0..1 through the swept points; CPT(x) = smallest swept escalation share with PGR >= x "
            "(RouteLLM, Ong et al. 2024)"
        ),
    }
    gap = q_exp - q_cheap
    if not gap > 1e-12:
        out["note"] = (
            f"the expensive predictor ({q_exp:.4f}) is not better than the cheap one ({q_cheap:.4f}): "
            "there is no gap to recover"
        )
        return out
    pts = sorted({(float(s), float(q)) for s, q in curve})
    if not pts or pts[0][0] > 0:
        pts.insert(0, (0.0, q_cheap))
    if pts[-1][0] < 1:
        pts.append((1.0, q_exp))
    s = np.array([p[0] for p in pts])
    pgr = (np.array([p[1] for p in pts]) - q_cheap) / gap
    out["apgr"] = float(np.sum(np.diff(s) * (pgr[1:] + pgr[:-1]) / 2))
    for x in levels:
        hit = s[pgr >= x - 1e-12]
        out["cpt"][f"{round(100 * x)}%"] = float(hit.min()) if hit.size else None
    return out
