"""Learn-then-Test thresholds: p-values, fixed-sequence testing, APGR/CPT, and the guarantee checked by
simulation over many calibration/test splits of one fixed prediction set (pure numpy, a few seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from slmforge.routing import RoutingError
from slmforge.routing.chain import ChainArrays, chain_paths, ltt_chain, path_sequence
from slmforge.routing.guarantee import (
    ALL,
    binomial_pvalues,
    descending_grid,
    field_metrics,
    fixed_sequence,
    hoeffding_bentkus_pvalues,
    ltt_two_tier,
    point_estimate_two_tier,
    routed_score_sums,
)

DELTA = 0.1


def _slack(splits: int, delta: float = DELTA) -> float:
    """Three binomial standard errors of a violation rate estimated from ``splits`` splits."""
    return 3 * math.sqrt(delta * (1 - delta) / splits)


def test_binomial_pvalue_is_the_exact_upper_tail() -> None:
    # 10/10 right against a target of 0.8: P(Bin(10, 0.8) >= 10) = 0.8**10.
    assert binomial_pvalues(np.array([10]), 10, 0.8)[0] == pytest.approx(0.8**10)
    assert binomial_pvalues(np.array([9]), 10, 0.8)[0] == pytest.approx(0.8**10 + 10 * 0.8**9 * 0.2)
    assert binomial_pvalues(np.array([0]), 10, 0.8)[0] == pytest.approx(1.0)


def test_hoeffding_bentkus_is_valid_but_looser_than_the_exact_test() -> None:
    n, target = 200, 0.8
    means = np.array([0.85, 0.9, 0.95])
    hb = hoeffding_bentkus_pvalues(means, n, target)
    exact = binomial_pvalues(means * n, n, target)
    assert np.all(hb >= exact)  # looser: it holds for any score distribution on [0, 1]
    assert np.all(hb <= np.exp(-2 * n * (means - target) ** 2))  # never looser than plain Hoeffding
    assert hb[2] < 1e-6 < hb[0]
    assert hoeffding_bentkus_pvalues(np.array([0.7]), n, target)[0] == 1.0  # below target: no evidence


def test_fixed_sequence_stops_at_the_first_non_rejection() -> None:
    assert fixed_sequence(np.array([0.01, 0.05, 0.2, 0.01]), 0.1) == 2
    assert fixed_sequence(np.array([0.5, 0.01]), 0.1) == 0
    assert fixed_sequence(np.array([0.01, 0.02]), 0.1) == 2


def test_routed_sums_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 200)
    conf[:5] = np.nan  # no confidence: always escalates
    c_ok, e_ok = (rng.random(200) < 0.6).astype(float), (rng.random(200) < 0.9).astype(float)
    forced = rng.random(200) < 0.1
    seq = descending_grid()
    sums, n_esc = routed_score_sums(conf, c_ok, e_ok, seq, forced)
    for j in (0, 1, 300, 700, 1001):
        esc = forced | np.isnan(conf) | (conf < seq[j])
        assert sums[j] == pytest.approx(np.where(esc, e_ok, c_ok).sum())
        assert n_esc[j] == esc.sum()


def test_nothing_certified_escalates_everything() -> None:
    conf = np.linspace(0.5, 1, 40)
    c_ok, e_ok = np.ones(40), np.r_[np.ones(30), np.zeros(10)]  # the expensive model alone: 0.75
    t, k, p, ps, kind = ltt_two_tier(conf, c_ok * 0, e_ok, target=0.9, delta=0.1)
    assert t == ALL and k == 0 and kind == "binomial" and p == pytest.approx(ps[0]) and p > 0.1


def test_field_metrics_follow_routellm() -> None:
    fm = field_metrics([(0.0, 0.6), (0.5, 0.9), (1.0, 1.0)], q_cheap=0.6, q_exp=1.0)
    # PGR = 0, 0.75, 1 at shares 0, 0.5, 1: trapezoid area 0.5·0.375 + 0.5·0.875.
    assert fm["apgr"] == pytest.approx(0.625)
    assert fm["cpt"] == {"50%": 0.5, "80%": 1.0, "95%": 1.0}
    # Missing ends are closed with the cheap-only and expensive-only points.
    assert field_metrics([(0.5, 0.8)], 0.6, 1.0)["apgr"] == pytest.approx(0.25 * 0.5 + 0.75 * 0.5)
    none = field_metrics([(0.0, 0.9), (1.0, 0.8)], q_cheap=0.9, q_exp=0.8)
    assert none["apgr"] is None and none["cpt"]["50%"] is None and "no gap to recover" in none["note"]


def _prediction_set(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fixed synthetic prediction set: the cheap model is right with probability = its confidence."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, n)
    return conf, (rng.random(n) < conf).astype(float), (rng.random(n) < 0.92).astype(float)


def test_guarantee_holds_over_resampled_splits_and_the_point_estimate_does_not() -> None:
    """Over 400 random calibration (400 rows) / test (2,600 rows) splits of one fixed prediction set, the
    Learn-then-Test threshold's test accuracy falls below the target in at most delta (+ slack) of the
    splits; the point-estimate threshold (validation mean >= target) does in about half."""
    conf, c_ok, e_ok = _prediction_set()
    target, splits, n_cal = 0.86, 400, 400
    rng = np.random.default_rng(1)

    def quality(t: float, idx: np.ndarray) -> float:
        return float(np.where(conf[idx] < t, e_ok[idx], c_ok[idx]).mean())

    ltt_test = ltt_pop = pe_test = 0
    kept = []
    everything = np.arange(len(conf))
    for _ in range(splits):
        perm = rng.permutation(len(conf))
        cal, test = perm[:n_cal], perm[n_cal:]
        t, *_ = ltt_two_tier(conf[cal], c_ok[cal], e_ok[cal], target, DELTA)
        ltt_test += quality(t, test) < target
        ltt_pop += quality(t, everything) < target
        kept.append(float(np.mean(conf[test] >= t)))
        pe_test += quality(point_estimate_two_tier(conf[cal], c_ok[cal], e_ok[cal], target), test) < target
    print(
        f"2-tier: LTT test violations {ltt_test / splits:.3f} (population {ltt_pop / splits:.3f}), point estimate {pe_test / splits:.3f}"
    )
    assert ltt_test / splits <= DELTA + _slack(splits)
    assert ltt_pop / splits <= DELTA + _slack(splits)
    assert pe_test / splits >= 0.3  # the old selection misses the target on new data about half the time
    assert np.mean(kept) > 0.3  # and the guarantee is not bought by escalating everything


def test_guarantee_holds_for_fractional_scores() -> None:
    """Per-row scores in [0, 1] (extraction F1): Hoeffding–Bentkus p-values, same check."""
    rng = np.random.default_rng(2)
    n = 3000
    conf = rng.uniform(0.3, 1.0, n)
    c_sc = np.clip(conf + rng.normal(0, 0.15, n), 0, 1)
    e_sc = np.clip(rng.normal(0.93, 0.05, n), 0, 1)
    target, splits = 0.85, 300
    viol = 0
    for _ in range(splits):
        perm = rng.permutation(n)
        cal, test = perm[:500], perm[500:]
        t, k, _, _, kind = ltt_two_tier(conf[cal], c_sc[cal], e_sc[cal], target, DELTA)
        assert kind == "hoeffding_bentkus" and k > 0
        viol += float(np.where(conf[test] < t, e_sc[test], c_sc[test]).mean()) < target
    print(f"fractional: LTT violations {viol / splits:.3f}")
    assert viol / splits <= DELTA + _slack(splits)


def test_three_tier_guarantee_holds_over_resampled_splits() -> None:
    """A 135M → 270M → API-like chain: thresholds chosen jointly along the fixed paths (Bonferroni)."""
    rng = np.random.default_rng(3)
    n = 3000
    c1, c2 = rng.uniform(0.3, 1, n), rng.uniform(0.5, 1, n)
    score = np.stack([rng.random(n) < c1, rng.random(n) < c2, rng.random(n) < 0.95]).astype(float)
    full = ChainArrays(np.stack([c1, c2]), score, np.ones((3, n)), np.array([1e-5, 3e-5, 1e-3]))
    target, splits, pe_splits = 0.86, 100, 30
    viol, pe_viol, shares = 0, 0, []
    for i in range(splits):
        perm = rng.permutation(n)
        cal, test = perm[:400], perm[400:]
        sub = ChainArrays(full.conf[:, cal], full.score[:, cal], full.latency[:, cal], full.costs)
        test_arrays = ChainArrays(full.conf[:, test], full.score[:, test], full.latency[:, test], full.costs)
        thresholds, rejected, _, n_hyp, _ = ltt_chain(sub, target, DELTA)
        assert rejected > 0 and n_hyp == 3 * 1002
        point = test_arrays.point(thresholds)
        viol += point.metric < target
        shares.append(point.tier_shares)
        if i >= pe_splits:
            continue
        # Point estimate over the same tuples: the cheapest whose calibration mean reaches the target.
        seq = np.vstack([path_sequence(o) for o in chain_paths(3)])
        sums, costs = sub.sums_and_costs(seq)
        ok = np.flatnonzero(sums / len(cal) >= target)
        pe_viol += test_arrays.point(seq[ok[np.argmin(costs[ok])]]).metric < target
    print(f"3-tier: LTT violations {viol / splits:.3f}, point estimate {pe_viol / pe_splits:.3f}")
    assert viol / splits <= DELTA + _slack(splits)
    assert pe_viol / pe_splits >= 0.3
    first, second, last = np.mean(shares, axis=0)
    assert first > 0.2 and second > 0.2 and last < 0.5  # every tier answers a real share


def test_ltt_rejects_bad_inputs() -> None:
    conf = np.array([0.5, 0.9])
    with pytest.raises(RoutingError, match=r"routing.target=1.2 is not a quality"):
        ltt_two_tier(conf, np.ones(2), np.ones(2), 1.2, 0.1)
    with pytest.raises(RoutingError, match=r"must lie in \[0, 1\]"):
        ltt_two_tier(conf, np.array([2.0, 1.0]), np.ones(2), 0.8, 0.1)


def test_binomial_test_is_exact_at_the_boundary() -> None:
    """At true quality = target, rejecting at p <= delta happens with probability <= delta (validity)."""
    n, target = 50, 0.8
    ks = np.arange(n + 1)
    p = binomial_pvalues(ks, n, target)
    assert binom.pmf(ks, n, target)[p <= DELTA].sum() <= DELTA
