"""Routing policy: save/load round trip, bad files, and per-request routing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmforge.routing import RoutingError, RoutingPolicy, TierRule


def _policy(**kw) -> RoutingPolicy:
    base = dict(
        cheap_name="smollm2-lora",
        expensive_name="gpt-4o",
        threshold=0.7,
        temperature=1.0,
        tiers=[TierRule("max_chars", 10), TierRule("labels", ["rare"])],
        expected_metric=0.94,
        expected_cost_per_1k_usd=0.29,
        expected_escalated_share=0.22,
        measured_on="test",
    )
    return RoutingPolicy(**{**base, **kw})


def test_save_load_round_trip(tmp_path: Path) -> None:
    p = _policy(temperature=1.7)
    path = p.save(tmp_path / "sub" / "policy.json")
    loaded = RoutingPolicy.load(path)
    assert loaded == p
    assert loaded.to_dict() == json.loads(path.read_text())
    assert loaded.tiers[1] == TierRule("labels", ("rare",))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"cheap_name": "a", "expensive_name": "b"}', r"missing field\(s\) \['threshold'\]"),
        ('{"cheap_name": "a", "expensive_name": "b", "threshold": "high"}', "threshold must be a number"),
        ('{"cheap_name": "a", "expensive_name": "b", "threshold": 0.5, "temperature": -1}', "temperature"),
        (
            '{"cheap_name": "a", "expensive_name": "b", "threshold": 0.5, "tiers": [{"lang": "de"}]}',
            r"tiers\[0\]",
        ),
        ('{"cheap_name": "a", "expensive_name": "b", "threshold": 0.5, "thresh": 1}', r"unknown field\(s\)"),
        ('{"cheap_name": "", "expensive_name": "b", "threshold": 0.5}', "non-empty string"),
        (
            '{"cheap_name": "a", "expensive_name": "b", "threshold": 0.5, "schema_version": 9}',
            "schema_version",
        ),
    ],
)
def test_bad_policy_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "policy.json"
    path.write_text(content)
    with pytest.raises(RoutingError, match=match) as info:
        RoutingPolicy.load(path)
    assert str(path) in str(info.value)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="no routing policy here"):
        RoutingPolicy.load(tmp_path / "nope.json")


def test_route() -> None:
    p = _policy()
    assert p.pre_route("a long text here") == "expensive"  # > 10 chars
    assert p.pre_route("short") == "cheap"
    assert p.route("a long text here", {"a": 0.99, "b": 0.01}) == "expensive"
    assert p.route("short", {"a": 0.8, "b": 0.2}) == "cheap"
    assert p.route("short", {"a": 0.6, "b": 0.4}) == "expensive"
    assert p.route("short", 0.8) == "cheap"
    assert p.route("short", None) == "expensive"  # no confidence: escalate, as in the sweep
    assert p.route("short", {"rare": 0.9, "b": 0.1}) == "expensive"  # label rule
    assert p.route("short", {"a": 0.1, "rare": 0.9}, cheap_pred="a") == "expensive"  # conf of "a" = 0.1


def test_route_applies_temperature() -> None:
    p = _policy(temperature=2.0)
    # T = 2: 0.8/0.2 -> sqrt ratio 2:1 -> 0.667, below 0.7.
    assert p.calibrated_confidence({"a": 0.8, "b": 0.2}) == pytest.approx(2 / 3)
    assert p.route("short", {"a": 0.8, "b": 0.2}) == "expensive"
    assert p.route("short", {"a": 0.9, "b": 0.1}) == "cheap"  # 0.75
    with pytest.raises(RoutingError, match="full label distribution"):
        p.route("short", 0.99)


def test_equal_predictor_names_are_told_apart():
    from pathlib import Path

    from slmforge.routing import distinct_names

    a, b = Path("/r/cmp/predictors/finetuned"), Path("/r/strong/predictors/finetuned")
    assert distinct_names("lora", "gpt", a, b) == ("lora", "gpt")
    assert distinct_names("lora", "lora", a, b) == ("lora (cmp)", "lora (strong)")
    assert distinct_names("lora", "lora", a, a) == ("lora (cheap)", "lora (expensive)")
