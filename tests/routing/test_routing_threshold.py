"""Threshold sweep, choice and description on a hand-computed 8-example fixture."""

from __future__ import annotations

import pytest

from slmforge.records import PredictionRow
from slmforge.routing import (
    RoutingError,
    choose_threshold,
    describe,
    evaluate_threshold,
    single_predictor_point,
    sweep_thresholds,
)
from slmforge.routing.threshold import ALL_THRESHOLD

# id, cheap confidence, cheap correct, expensive correct
FIXTURE = [
    ("a", 0.95, 1, 1),
    ("b", 0.90, 1, 1),
    ("c", 0.80, 1, 0),
    ("d", 0.70, 0, 1),
    ("e", 0.60, 1, 1),
    ("f", 0.55, 0, 1),
    ("g", 0.40, 0, 0),
    ("h", None, 0, 1),  # no confidence: always escalates
]
COST_CHEAP, COST_EXP = 0.0001, 0.001  # USD per request -> $0.10 and $1.00 per 1k


def _rows() -> tuple[list[PredictionRow], list[PredictionRow]]:
    cheap = [PredictionRow(i, "", "g", "p", c, float(ok), 10.0) for i, c, ok, _ in FIXTURE]
    # The expensive list in another order: routing aligns on id, not position.
    exp = [PredictionRow(i, "", "g", "p", 0.99, float(ok), 100.0) for i, _, _, ok in reversed(FIXTURE)]
    return cheap, exp


# threshold, n escalated, escalated share, metric, cost per 1k, mean latency (10 ms + 100 ms if escalated)
# (t = 0.40 escalates the same examples as t = 0 and is dropped from the sweep.)
EXPECTED = [
    (0.0, 1, 0.125, 0.625, 0.225, 22.5),
    (0.55, 2, 0.25, 0.625, 0.35, 35.0),
    (0.60, 3, 0.375, 0.75, 0.475, 47.5),
    (0.70, 4, 0.5, 0.75, 0.6, 60.0),
    (0.80, 5, 0.625, 0.875, 0.725, 72.5),
    (0.90, 6, 0.75, 0.75, 0.85, 85.0),
    (0.95, 7, 0.875, 0.75, 0.975, 97.5),
    (ALL_THRESHOLD, 8, 1.0, 0.75, 1.1, 110.0),
]


def _points():
    cheap, exp = _rows()
    return sweep_thresholds(cheap, exp, COST_CHEAP, COST_EXP)


def test_sweep_matches_hand_computed_curve() -> None:
    points = _points()
    assert len(points) == len(EXPECTED)
    for p, (t, n_esc, share, metric, cost, lat) in zip(points, EXPECTED, strict=True):
        assert p.threshold == pytest.approx(t)
        assert p.n == 8
        assert p.n_escalated == n_esc
        assert p.escalated_share == pytest.approx(share)
        assert p.metric == pytest.approx(metric)
        assert p.cost_per_1k_usd == pytest.approx(cost)
        assert p.latency_mean_ms == pytest.approx(lat)
        assert p.kind == "threshold"


def test_p95_latency_by_hand() -> None:
    points = _points()
    # t=0: seven examples at 10 ms, one at 110 ms; p95 index 0.95*7 = 6.65 -> 10 + 0.65*100.
    assert points[0].latency_p95_ms == pytest.approx(75.0)
    # t=0.6: five at 10 ms, three at 110 ms -> p95 interpolates between two 110s.
    assert points[2].latency_p95_ms == pytest.approx(110.0)


def test_target_picks_cheapest_point_reaching_it() -> None:
    points = _points()
    chosen = choose_threshold(points, target_metric=0.75)
    assert chosen.threshold == pytest.approx(0.60)
    assert chosen.metric >= 0.75
    assert all(p.cost_per_1k_usd >= chosen.cost_per_1k_usd for p in points if p.metric >= 0.75)
    assert choose_threshold(points, target_metric=0.8).threshold == pytest.approx(0.80)


def test_target_tie_on_cost_prefers_less_escalation() -> None:
    cheap, exp = _rows()
    points = sweep_thresholds(cheap, exp, COST_CHEAP, 0.0)  # a free expensive predictor: all costs tie
    assert {round(p.cost_per_1k_usd, 9) for p in points} == {0.1}
    assert choose_threshold(points, target_metric=0.75).threshold == pytest.approx(0.60)


def test_budget_and_default_choice() -> None:
    points = _points()
    assert choose_threshold(points, budget_per_1k=0.5).threshold == pytest.approx(0.60)
    assert choose_threshold(points, budget_per_1k=0.3).threshold == pytest.approx(0.0)
    # Neither: the best metric (0.875 at t=0.8).
    assert choose_threshold(points).threshold == pytest.approx(0.80)
    # Both: cheapest reaching the target within the budget.
    assert choose_threshold(points, target_metric=0.75, budget_per_1k=0.65).threshold == pytest.approx(0.60)


def test_unreachable_target_names_best_achievable() -> None:
    with pytest.raises(
        RoutingError, match=r"accuracy >= 0\.9000.*best achievable is 0\.8750.*lower the target"
    ):
        choose_threshold(_points(), target_metric=0.9, metric_name="accuracy")


def test_unreachable_budget_names_lowest_cost() -> None:
    with pytest.raises(
        RoutingError, match=r"budget of \$0\.2000.*lowest cost is \$0\.2250.*raise the budget"
    ):
        choose_threshold(_points(), budget_per_1k=0.2)
    with pytest.raises(RoutingError, match=r"reachable but not within.*costs \$0\.7250"):
        choose_threshold(_points(), target_metric=0.8, budget_per_1k=0.5)


def test_mismatched_ids_raise() -> None:
    cheap, exp = _rows()
    exp = [*exp[1:], PredictionRow("zz", "", "g", "p", 0.9, 1.0, 100.0)]
    with pytest.raises(
        RoutingError, match=r"1 id\(s\) missing from cheap and 1 missing from expensive.*same split"
    ):
        sweep_thresholds(cheap, exp, COST_CHEAP, COST_EXP)


def test_duplicate_ids_and_bad_costs_raise() -> None:
    cheap, exp = _rows()
    with pytest.raises(RoutingError, match="duplicate"):
        sweep_thresholds([*cheap, cheap[0]], exp, COST_CHEAP, COST_EXP)
    with pytest.raises(RoutingError, match="cost_exp"):
        sweep_thresholds(cheap, exp, COST_CHEAP, -1.0)


def test_evaluate_threshold_and_references() -> None:
    cheap, exp = _rows()
    p = evaluate_threshold(cheap, exp, 0.65, COST_CHEAP, COST_EXP)  # same decisions as t=0.7
    assert (p.n_escalated, p.metric, p.cost_per_1k_usd) == (4, pytest.approx(0.75), pytest.approx(0.6))
    cheap_only = single_predictor_point(cheap, COST_CHEAP, "cheap_only")
    exp_only = single_predictor_point(exp, COST_EXP, "expensive_only")
    assert (cheap_only.metric, cheap_only.cost_per_1k_usd, cheap_only.escalated_share) == (0.5, 0.1, 0.0)
    assert (exp_only.metric, exp_only.cost_per_1k_usd, exp_only.latency_mean_ms) == (0.75, 1.0, 100.0)
    assert exp_only.threshold is None


def test_describe() -> None:
    point = _points()[3]  # t=0.7: half escalated, 0.75 at $0.60 vs $1.00 expensive-only
    text = describe(point, "slm", "llm", exp_only_metric=0.75, exp_only_cost=1.0)
    assert text == "route 50% to slm at threshold 0.70: accuracy 0.750 vs 0.750 llm-only, cost −40%"
    more = describe(_points()[-1], "slm", "llm", 0.75, 1.0, metric_name="score")
    assert "route 0% to slm at threshold 1 (escalate all): score 0.750" in more
    assert more.endswith("cost +10%")
