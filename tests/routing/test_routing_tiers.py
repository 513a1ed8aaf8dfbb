"""Tier rules: each rule by hand, and their effect on latency/cost/metric."""

from __future__ import annotations

import pytest

from slmforge.records import PredictionRow
from slmforge.routing import RoutingError, TierRule, apply_tiers, parse_rules, sweep_thresholds, sweep_tiers
from slmforge.routing.tiers import non_ascii_share, pre_route

# id, text, cheap pred, cheap confidence, cheap correct, expensive correct
FIXTURE = [
    ("1", "short ok", "pos", 0.9, 1, 1),  # stays with the cheap model
    ("2", "x" * 30, "pos", 0.95, 0, 1),  # longer than 20 chars -> expensive only
    ("3", "REFUND please", "pos", 0.9, 0, 1),  # pattern -> expensive only
    ("4", "éééé ok", "pos", 0.9, 0, 1),  # 4 of 6 non-space chars non-ASCII -> expensive only
    ("5", "fine text", "neg", 0.9, 0, 1),  # predicted label "neg" -> cheap, then expensive
    ("6", "another", "pos", 0.5, 1, 0),  # below threshold 0.6 -> cheap, then expensive
]
RULES = [
    TierRule("max_chars", 20),
    TierRule("pattern", "(?i)refund"),
    TierRule("non_ascii_share", 0.3),
    TierRule("labels", ["neg"]),
]


def _rows() -> tuple[list[PredictionRow], list[PredictionRow]]:
    cheap = [PredictionRow(i, t, "g", p, c, float(ok), 10.0) for i, t, p, c, ok, _ in FIXTURE]
    exp = [PredictionRow(i, t, "g", "p", 0.99, float(ok), 100.0) for i, t, _, _, _, ok in FIXTURE]
    return cheap, exp


def test_each_rule_by_hand() -> None:
    long, pattern, non_ascii, labels = RULES
    assert long.matches("x" * 21) and not long.matches("x" * 20)
    assert pattern.matches("a Refund now") and not pattern.matches("refu nd")
    assert non_ascii_share("éééé ok") == pytest.approx(4 / 6)
    assert non_ascii_share("   ") == 0.0
    assert non_ascii.matches("éééé ok") and not non_ascii.matches("ée ok ok")  # 1/6 non-ASCII
    assert labels.matches("", "neg") and not labels.matches("", "pos") and not labels.matches("any text")
    assert labels.needs_cheap and not long.needs_cheap
    assert pre_route("REFUND", RULES) and not pre_route("fine", RULES)


def test_apply_tiers_by_hand() -> None:
    cheap, exp = _rows()
    p = apply_tiers(cheap, exp, RULES, threshold=0.6, cost_cheap=0.0001, cost_exp=0.001)
    assert p.kind == "tiered"
    assert p.n_escalated == 5 and p.escalated_share == pytest.approx(5 / 6)
    assert p.n_tier_routed == 4 and p.tier_share == pytest.approx(4 / 6)  # ids 2, 3, 4 and 5
    assert p.metric == pytest.approx(5 / 6)  # only id 6 ends up wrong
    # Latency: id 1 10 ms; ids 2-4 100 ms (expensive only); ids 5-6 110 ms (both).
    assert p.latency_mean_ms == pytest.approx((10 + 300 + 220) / 6)
    # Cost: 0.0001 + 3 * 0.001 + 2 * 0.0011 per 6 requests, per 1k.
    assert p.cost_per_1k_usd == pytest.approx(1000 * 0.0053 / 6)


def test_sweep_tiers_without_rules_is_the_threshold_sweep() -> None:
    cheap, exp = _rows()
    assert sweep_tiers(cheap, exp, [], 0.0001, 0.001) == sweep_thresholds(cheap, exp, 0.0001, 0.001)
    tiered = sweep_tiers(cheap, exp, RULES, 0.0001, 0.001)
    # At t=0 only the rules escalate; the last point escalates everything.
    assert tiered[0].n_escalated == 4 and tiered[-1].n_escalated == 6
    assert all(p.kind == "tiered" for p in tiered)


def test_rule_parsing_and_validation() -> None:
    assert parse_rules([{"max_chars": 100}, {"kind": "labels", "value": ["b", "a"]}]) == [
        TierRule("max_chars", 100),
        TierRule("labels", ("a", "b")),
    ]
    assert TierRule("labels", ["b", "a"]).to_dict() == {"kind": "labels", "value": ["a", "b"]}
    with pytest.raises(RoutingError, match="unknown tier rule kind 'lang'"):
        TierRule("lang", "de")
    with pytest.raises(RoutingError, match="not a valid regular expression"):
        TierRule("pattern", "(unclosed")
    with pytest.raises(RoutingError, match="non-negative integer"):
        TierRule("max_chars", -1)
    with pytest.raises(RoutingError, match=r"tier rule #1: .*share in \[0, 1\)"):
        parse_rules([{"max_chars": 1}, {"non_ascii_share": 1.5}])
    with pytest.raises(RoutingError, match="one key"):
        parse_rules([{"max_chars": 1, "pattern": "x"}])


def test_text_rules_need_texts() -> None:
    cheap = [PredictionRow(str(i), "", "g", "p", 0.9, 1.0, 10.0) for i in range(3)]
    with pytest.raises(RoutingError, match="'text' field"):
        apply_tiers(cheap, cheap, [TierRule("max_chars", 5)], 0.5, 0.0, 0.0)
    # The label rule needs no text.
    assert apply_tiers(cheap, cheap, [TierRule("labels", ["p"])], 0.5, 0.0, 0.0).n_escalated == 3
