"""evaluate_routing end to end on two synthetic run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from slmforge.records import PredictionRow, ResultsRecord, read_predictions, write_predictions, write_results
from slmforge.routing import (
    VALIDATION_PREDICTIONS_FILE,
    RoutingError,
    RoutingPolicy,
    choose_threshold,
    evaluate_routing,
    sweep_thresholds,
)


def _rows(kind: str, n: int, seed: int, label_probs: bool = True) -> list[PredictionRow]:
    """Cheap: right with probability q but reports q sharpened (over-confident). Expensive: 95% right."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        gold = "pos" if rng.random() < 0.5 else "neg"
        other = "neg" if gold == "pos" else "pos"
        text = f"example {i}" + (" long" * 10 if i % 10 == 0 else "")
        if kind == "cheap":
            q = rng.uniform(0.5, 1.0)
            ok = rng.random() < q
            conf = q**0.25 if q < 1 else 1.0  # over-confident
            pred = gold if ok else other
            probs = {pred: conf, (other if ok else gold): 1 - conf}
            rows.append(
                PredictionRow(
                    f"ex{i}",
                    text,
                    gold,
                    pred,
                    conf,
                    float(ok),
                    20.0,
                    label_probs=probs if label_probs else None,
                )
            )
        else:
            ok = rng.random() < 0.95
            rows.append(PredictionRow(f"ex{i}", text, gold, gold if ok else other, None, float(ok), 500.0))
    return rows


def _run(
    root: Path,
    name: str,
    kind: str,
    per_1k: float | None = None,
    task: str = "sentiment",
    split: str = "test",
    validation: bool = False,
    label_probs: bool = True,
) -> Path:
    d = root / name
    rows = _rows(kind, 300, seed=1 if kind == "cheap" else 2, label_probs=label_probs)
    write_predictions(d / "predictions.jsonl", rows)
    if validation:
        val = _rows(kind, 300, seed=11 if kind == "cheap" else 12, label_probs=label_probs)
        write_predictions(d / VALIDATION_PREDICTIONS_FILE, val)
    rec = ResultsRecord(
        run_id=name,
        name=name,
        task=task,
        split=split,
        n=len(rows),
        predictor={"kind": "local"},
        data={},
        metrics={"accuracy": float(np.mean([r.correct for r in rows]))},
        latency_ms={},
        throughput={},
        tokens={},
    )
    write_results(d, rec)
    return d


def test_without_validation_files(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap", per_1k=0.05)
    exp = _run(tmp_path, "llm", "exp", per_1k=2.0)
    res = evaluate_routing(cheap, exp, 0.05 / 1000, 2.0 / 1000, target=0.85, guarantee="none")
    assert res.guarantee.method == "none" and not res.guarantee.valid
    assert res.guarantee.statement.startswith("no guarantee")
    assert res.cost_cheap_per_request == pytest.approx(0.05 / 1000)
    assert res.cost_exp_per_request == pytest.approx(2.0 / 1000)
    assert res.metric_name == "accuracy" and res.n == 300 and res.split == "test"
    assert res.calibration_fit_on == "test" and res.selected_on == "test"
    assert any("temperature fitted on the evaluated split" in w for w in res.warnings)
    assert any("same split" in w for w in res.warnings)
    assert res.temperature > 1.5  # the cheap model is over-confident: the fit softens it
    assert res.calibration_after["nll"] < res.calibration_before["nll"]
    assert res.chosen.metric >= 0.85
    assert res.chosen == min((p for p in res.points if p.metric >= 0.85), key=lambda p: p.cost_per_1k_usd)
    assert res.policy.threshold == res.chosen.threshold and res.policy.temperature == res.temperature
    assert res.description.startswith("route ") and "llm-only" in res.description
    assert res.expensive_only.cost_per_1k_usd == pytest.approx(2.0)
    json.dumps(res.to_dict(), allow_nan=False)  # report-ready
    # The policy file it carries loads back.
    assert RoutingPolicy.load(res.policy.save(tmp_path / "policy.json")) == res.policy


def test_uncalibrated_equals_plain_sweep(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap")
    exp = _run(tmp_path, "llm", "exp")
    res = evaluate_routing(
        cheap, exp, cost_cheap=0.0001, cost_exp=0.002, target=0.8, calibrate=False, guarantee="none"
    )
    points = sweep_thresholds(read_predictions(cheap), read_predictions(exp), 0.0001, 0.002)
    assert res.points == points
    assert res.chosen == choose_threshold(points, target_metric=0.8)
    assert res.temperature == 1.0 and res.calibration_after is None
    assert res.calibration_before is not None  # still reported when label_probs exist


def test_with_validation_files(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap", per_1k=0.05, validation=True)
    exp = _run(tmp_path, "llm", "exp", per_1k=2.0, validation=True)
    res = evaluate_routing(cheap, exp, 0.05 / 1000, 2.0 / 1000, target=0.85, tiers=[{"max_chars": 40}])
    assert res.calibration_fit_on == "validation" and res.selected_on == "validation"
    assert res.selection_points is not None
    # With a target the default is Learn-then-Test on the validation rows: a threshold of the fixed grid.
    g = res.guarantee
    assert g.method == "ltt" and g.valid and g.p_values == "binomial" and g.n_calibration == 300
    assert g.n_rejected >= 1 and g.p_value <= 0.1 and not g.fallback_all
    assert round(res.chosen.threshold, 3) == res.chosen.threshold
    assert g.statement.startswith("guaranteed: routed accuracy >= 0.8500 with probability >= 0.90")
    assert g.observed_metric == res.chosen.metric and g.observed_on == "test"
    assert res.policy.guarantee["statement"] == g.statement
    # It escalates at least as much as the point estimate on the same validation rows (the guarantee's price).
    point = choose_threshold(res.selection_points, target_metric=0.85)
    assert res.chosen.threshold >= point.threshold
    assert res.chosen.kind == "tiered" and res.chosen.n_tier_routed == 30  # every 10th text is long
    assert not any("same split" in w for w in res.warnings)
    assert res.policy.tiers[0].kind == "max_chars"
    assert math.isfinite(res.temperature)


def test_errors(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap")
    exp = _run(tmp_path, "llm", "exp")
    with pytest.raises(RoutingError, match=r"no cost per request for 'slm'; pass cost_cheap"):
        evaluate_routing(cheap, exp)
    with pytest.raises(RoutingError, match="select_on='validation' needs"):
        evaluate_routing(cheap, exp, 0.0, 0.0, select_on="validation")
    with pytest.raises(RoutingError, match="best achievable"):
        evaluate_routing(cheap, exp, 0.0, 0.001, target=0.999, guarantee="none")
    with pytest.raises(RoutingError, match=r"routing.target=1.5 is not a quality in \[0, 1\]"):
        evaluate_routing(cheap, exp, 0.0, 0.001, target=1.5)
    with pytest.raises(RoutingError, match=r"routing.delta=0 must lie in \(0, 1\)"):
        evaluate_routing(cheap, exp, 0.0, 0.001, target=0.8, delta=0)
    with pytest.raises(RoutingError, match=r"routing\.guarantee=ltt needs routing\.target"):
        evaluate_routing(cheap, exp, 0.0, 0.001, guarantee="ltt")
    other_task = _run(tmp_path, "llm_other", "exp", task="ner")
    with pytest.raises(RoutingError, match="same task"):
        evaluate_routing(cheap, other_task, 0.0, 0.0)
    other_split = _run(tmp_path, "llm_val", "exp", split="validation")
    with pytest.raises(RoutingError, match="same split"):
        evaluate_routing(cheap, other_split, 0.0, 0.0)
    short = tmp_path / "llm_short"
    _run(tmp_path, "llm_short", "exp")
    write_predictions(short / "predictions.jsonl", read_predictions(short)[:-5])
    with pytest.raises(
        RoutingError, match=r"0 id\(s\) missing from \S*slm and 5 missing from \S*llm_short.*same split"
    ):
        evaluate_routing(cheap, short, 0.0, 0.0)


def test_no_label_probs_skips_calibration(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap", label_probs=False)
    exp = _run(tmp_path, "llm", "exp")
    res = evaluate_routing(cheap, exp, 0.0001, 0.002)
    assert res.temperature == 1.0 and res.calibration_fit_on is None and res.calibration_before is None
    assert any("not calibrated" in w for w in res.warnings)


def test_ltt_that_certifies_nothing_escalates_everything_and_says_so(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap", validation=True)
    exp = _run(tmp_path, "llm", "exp", validation=True)
    res = evaluate_routing(cheap, exp, 0.0001, 0.002, target=0.999)
    g = res.guarantee
    assert g.fallback_all and g.n_rejected == 0 and g.valid
    assert res.chosen.escalated_share == 1.0 and res.chosen.metric == res.expensive_only.metric
    assert g.statement.startswith("not certified: no threshold passed at delta=0.1")
    assert any("everything escalated to llm" in w for w in res.warnings)


def test_ltt_on_the_evaluated_split_is_void_and_loud(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap", validation=True)
    exp = _run(tmp_path, "llm", "exp", validation=True)
    res = evaluate_routing(cheap, exp, 0.0001, 0.002, target=0.85, select_on="split", calibrate=False)
    g = res.guarantee
    assert not g.valid and g.calibrated_on == "test" and g.n_rejected > 0
    assert g.statement.startswith("NO GUARANTEE: Learn-then-Test ran on the evaluated split itself (test")
    assert any("guarantee is VOID" in w for w in res.warnings)
    assert res.to_dict()["guarantee"]["valid"] is False


def test_field_metrics_are_reported(tmp_path: Path) -> None:
    cheap = _run(tmp_path, "slm", "cheap")
    exp = _run(tmp_path, "llm", "exp")
    res = evaluate_routing(cheap, exp, 0.0001, 0.002, calibrate=False)
    fm = res.to_dict()["field_metrics"]
    assert fm["q_cheap"] == res.cheap_only.metric and fm["q_expensive"] == res.expensive_only.metric
    # A confidence that tracks correctness recovers more of the gap than escalating at random (APGR 0.5).
    assert 0.5 < fm["apgr"] <= 1.0
    assert 0 < fm["cpt"]["50%"] <= fm["cpt"]["80%"] <= fm["cpt"]["95%"] <= 1.0
    assert res.guarantee.method == "none" and res.guarantee.statement.startswith("no guarantee")
