"""Voting ensembles by hand: majority, its tie-breaks, weighted votes, latency and cost."""

from __future__ import annotations

import pytest

from slmforge.records import PredictionRow
from slmforge.routing import RoutingError, vote

GOLD = {"1": "y", "2": "y", "3": "x", "4": "z"}
# member -> id -> (pred, confidence)
VOTES = {
    "A": {"1": ("x", 0.9), "2": ("x", 0.6), "3": ("x", 0.8), "4": ("y", 0.9)},
    "B": {"1": ("x", 0.6), "2": ("y", 0.7), "3": ("y", 0.8), "4": ("z", 0.4)},
    "C": {"1": ("y", 0.99), "2": ("z", 0.5), "3": ("z", 0.8), "4": ("z", 0.45)},
}
LATENCY = {"A": 10.0, "B": 20.0, "C": 30.0}


def _members() -> list[list[PredictionRow]]:
    out = []
    for m, votes in VOTES.items():
        rows = [
            PredictionRow(i, "", GOLD[i], p, c, float(p == GOLD[i]), LATENCY[m])
            for i, (p, c) in votes.items()
        ]
        out.append(rows if m != "B" else rows[::-1])  # aligned on id, not position
    return out


def test_majority_with_tie_breaks() -> None:
    res = vote(_members(), mode="majority", costs=[0.001, 0.002, 0.003], names=["A", "B", "C"])
    # 1: x has two votes. 2: one vote each, y has the highest confidence (0.7).
    # 3: one vote each and equal confidence 0.8 -> member order -> A's x. 4: z has two votes.
    assert [r.pred for r in res.predictions] == ["x", "y", "x", "z"]
    assert [r.id for r in res.predictions] == ["1", "2", "3", "4"]
    assert res.accuracy == pytest.approx(0.75) and res.metric == pytest.approx(0.75)
    assert res.predictions[0].confidence == pytest.approx(2 / 3)  # vote share
    assert res.cost_per_1k_usd == pytest.approx(6.0)
    assert res.latency_mean_ms == pytest.approx(30.0)  # parallel: the slowest member
    assert res.summary()["n"] == 4 and "predictions" not in res.summary()


def test_weighted_votes() -> None:
    # Equal weights: 1 x 1.5 vs y 0.99; 2 y 0.7; 3 tie at 0.8 -> A's x; 4 y 0.9 vs z 0.85 -> y.
    res = vote(_members(), mode="weighted")
    assert [r.pred for r in res.predictions] == ["x", "y", "x", "y"]
    assert res.accuracy == pytest.approx(0.5)
    assert res.predictions[0].confidence == pytest.approx(1.5 / (1.5 + 0.99))
    assert res.cost_per_1k_usd is None
    # B counts double: 3 y 1.6 beats 0.8 each; 4 z 0.8 + 0.45 beats y 0.9.
    res2 = vote(_members(), weights=[1, 2, 1], mode="weighted")
    assert [r.pred for r in res2.predictions] == ["x", "y", "y", "z"]
    assert res2.accuracy == pytest.approx(0.5)


def test_sequential_latency_and_errors() -> None:
    res = vote(_members(), parallel=False)
    assert res.latency_mean_ms == pytest.approx(60.0)
    members = _members()
    members[2] = members[2][:-1]
    with pytest.raises(RoutingError, match=r"1 id\(s\) missing from member2.*same split"):
        vote(members)
    with pytest.raises(RoutingError, match="unknown ensemble mode"):
        vote(_members(), mode="borda")
    with pytest.raises(RoutingError, match="2 weights for 3"):
        vote(_members(), weights=[1, 1])


def test_structured_predictions_vote_by_value() -> None:
    gold = {"a": 1, "b": 2}
    rows = [
        [PredictionRow("1", "", gold, {"b": 2, "a": 1}, None, 1.0, 5.0)],
        [PredictionRow("1", "", gold, {"a": 1, "b": 2}, None, 1.0, 5.0)],
        [PredictionRow("1", "", gold, {"a": 9}, None, 0.0, 5.0)],
    ]
    res = vote(rows)
    assert res.predictions[0].pred == gold and res.accuracy == 1.0
