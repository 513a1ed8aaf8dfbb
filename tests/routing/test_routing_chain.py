"""A chain of three predictors (one threshold per tier) from synthetic run directories, and its policy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slmforge.records import (
    VALIDATION_PREDICTIONS_FILE,
    PredictionRow,
    ResultsRecord,
    write_predictions,
    write_results,
)
from slmforge.routing import RoutingError, RoutingPolicy, evaluate_chain
from slmforge.routing.chain import ChainArrays


def _rows(n: int, seed: int, acc: float | None, lat: float) -> list[PredictionRow]:
    """``acc`` None: right with probability = its confidence (calibrated); else right with probability acc."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        conf = float(rng.uniform(0.4, 1.0))
        ok = rng.random() < (conf if acc is None else acc)
        probs = {"a": conf, "b": 1 - conf} if ok else {"b": conf, "a": 1 - conf}
        pred = "a" if ok else "b"
        rows.append(PredictionRow(f"ex{i}", f"text {i}", "a", pred, conf, float(ok), lat, label_probs=probs))
    return rows


def _run(root: Path, name: str, seed: int, acc: float | None, lat: float) -> Path:
    d = root / name
    rows = _rows(600, seed, acc, lat)
    write_predictions(d / "predictions.jsonl", rows)
    write_predictions(d / VALIDATION_PREDICTIONS_FILE, _rows(600, seed + 100, acc, lat))
    write_results(
        d,
        ResultsRecord(
            run_id=name,
            name=name,
            task="sentiment",
            split="test",
            n=len(rows),
            predictor={"kind": "local"},
            data={},
            metrics={"accuracy": float(np.mean([r.correct for r in rows]))},
            latency_ms={},
            throughput={},
            tokens={},
        ),
    )
    return d


@pytest.fixture
def chain_dirs(tmp_path: Path) -> list[Path]:
    return [
        _run(tmp_path, "small", 1, None, 10.0),
        _run(tmp_path, "medium", 2, None, 30.0),
        _run(tmp_path, "api", 3, 0.97, 500.0),
    ]


def test_answered_by_takes_the_first_tier_that_is_sure_enough() -> None:
    conf = np.array([[0.9, 0.5, 0.5, np.nan], [0.1, 0.8, 0.2, 0.9]])
    arr = ChainArrays(
        conf, np.ones((3, 4)), np.array([[1.0] * 4, [10.0] * 4, [100.0] * 4]), np.array([1, 2, 4])
    )
    assert arr.answered_by([0.7, 0.7]).tolist() == [0, 1, 2, 1]  # NaN: no confidence moves on
    p = arr.point([0.7, 0.7])
    assert p.tier_shares == (0.25, 0.5, 0.25) and p.escalated_share == 0.25
    # Latency and cost add up along the tiers a request went through.
    assert p.latency_mean_ms == pytest.approx((1 + 11 + 111 + 11) / 4)
    assert p.cost_per_1k_usd == pytest.approx(1000 * (1 + 3 + 7 + 3) / 4)


def test_chain_with_guarantee(chain_dirs: list[Path]) -> None:
    res = evaluate_chain(chain_dirs, [1e-5, 3e-5, 1e-3], target=0.9, delta=0.1)
    g = res.guarantee
    assert g.method == "ltt" and g.valid and g.paths == 3 and g.n_calibration == 600 and not g.fallback_all
    assert g.statement.startswith("guaranteed: routed accuracy >= 0.9000 with probability >= 0.90")
    assert "fixed sequence along 3 paths, Bonferroni across them" in g.statement
    c = res.chosen
    assert len(c.thresholds) == 2 and all(0 < t <= 1 for t in c.thresholds)
    assert sum(c.tier_shares) == pytest.approx(1.0) and min(c.tier_shares) > 0
    assert g.observed_metric == c.metric and g.observed_on == "test"
    # The chain costs less than sending everything to the API.
    assert c.cost_per_1k_usd < res.singles[-1]["cost_per_1k_usd"]
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert [t["threshold"] for t in d["tiers"]] == [*c.thresholds, None]
    assert [t["share"] for t in d["tiers"]] == list(c.tier_shares)
    assert d["field_metrics"]["apgr"] is not None


def test_chain_policy_round_trips_and_routes(chain_dirs: list[Path], tmp_path: Path) -> None:
    res = evaluate_chain(chain_dirs, [1e-5, 3e-5, 1e-3], target=0.9, calibrate=False)
    pol = RoutingPolicy.load(res.policy.save(tmp_path / "policy.json"))
    assert pol == res.policy
    assert [t["threshold"] for t in pol.chain] == [*res.chosen.thresholds, None]
    assert pol.threshold == res.chosen.thresholds[0] and pol.guarantee["valid"] is True
    t1, t2 = res.chosen.thresholds
    assert pol.route_chain([t1]) == 0  # sure enough: the first tier answers
    assert pol.route_chain([t1 - 0.01]) == 1  # not sure: run the second tier, then ask again
    assert pol.route_chain([t1 - 0.01, t2 - 0.01]) == 2
    assert pol.route_chain([None, t2]) == 1


def test_old_policy_files_still_load(tmp_path: Path) -> None:
    old = {
        "schema_version": 1,
        "cheap_name": "slm",
        "expensive_name": "llm",
        "threshold": 0.7,
        "temperature": 1.0,
    }
    (tmp_path / "p.json").write_text(json.dumps(old))
    pol = RoutingPolicy.load(tmp_path / "p.json")
    assert pol.chain is None and pol.guarantee is None
    assert "chain" not in pol.to_dict()
    bad = {
        **old,
        "chain": [
            {"name": "a", "threshold": 0.5, "temperature": 1.0},
            {"name": "b", "threshold": 0.3, "temperature": 1.0},
        ],
    }
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(RoutingError, match=r"chain\[1\] is the last tier.*threshold must be null"):
        RoutingPolicy.load(tmp_path / "bad.json")


def test_chain_errors(chain_dirs: list[Path]) -> None:
    with pytest.raises(RoutingError, match="at least 2 predictor dirs"):
        evaluate_chain(chain_dirs[:1], [0.0])
    with pytest.raises(RoutingError, match=r"routing\.guarantee=ltt needs routing\.target"):
        evaluate_chain(chain_dirs, [0, 0, 0], guarantee="ltt")
    res = evaluate_chain(chain_dirs, [0, 0, 0], target=0.9, select_on="split")
    assert not res.guarantee.valid and res.guarantee.statement.startswith("NO GUARANTEE")
    assert any("guarantee is VOID" in w for w in res.warnings)


def test_chain_curve_plots_with_the_target_line(chain_dirs: list[Path], tmp_path: Path) -> None:
    from slmforge.routing.plots import plot_routing_curve
    from slmforge.routing.threshold import RoutingPoint

    res = evaluate_chain(chain_dirs, [1e-5, 3e-5, 1e-3], target=0.9, calibrate=False)
    path = plot_routing_curve(
        res.points, res.chosen, tmp_path / "curve.png", RoutingPoint.from_dict(res.singles[0]),
        RoutingPoint.from_dict(res.singles[-1]), target=0.9, target_label="guaranteed target",
    )  # fmt: skip
    assert path.stat().st_size > 1000
    shares = [p.escalated_share for p in res.points]
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == 1.0
