"""slmforge-evaluate on the tiny model with an out-of-scope label and abstention: the OOS metrics, the
threshold chosen on validation, the coverage-accuracy side file, and rows that agree with the record."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from clihelp import run_cli

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "out_of_scope"
OOS = "out_of_scope"


def _evaluate(tmp_path: Path, *args: str):
    return run_cli(
        "slmforge-evaluate", "model=tiny", "logger=none", "data=jsonl",
        f"data.train_path={FIXTURE / 'train.jsonl'}", f"data.validation_path={FIXTURE / 'validation.jsonl'}",
        f"data.test_path={FIXTURE / 'test.jsonl'}", "eval.batch_size=8", "eval.latency_probe_n=2",
        f"hydra.run.dir={tmp_path / 'ev'}", *args, cwd=tmp_path, env={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("oos")
    proc = _evaluate(
        tmp, f"task.out_of_scope_label={OOS}", "task.abstain.enabled=true", "task.abstain.target_accuracy=0.5"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "ev"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_out_of_scope_metrics_are_recorded_and_agree_with_the_rows(evaluated: Path) -> None:
    record = json.loads((evaluated / "results.json").read_text())
    m = record["metrics"]
    rows = _rows(evaluated / "predictions.jsonl")
    assert len(rows) == record["n"] == 28
    for key in ("in_scope_accuracy", "oos_precision", "oos_recall", "oos_f1", "oos_auroc", "coverage",
                "selective_accuracy", "accuracy_coverage_auc"):  # fmt: skip
        assert 0.0 <= m[key] <= 1.0, (key, m[key])
    gold_oos = [r for r in rows if r["gold"] == OOS]
    assert m["n_out_of_scope"] == len(gold_oos) == 10
    assert m["oos_recall"] == pytest.approx(sum(r["pred"] == OOS for r in gold_oos) / len(gold_oos))
    predicted_oos = [r for r in rows if r["pred"] == OOS]
    if predicted_oos:
        hits = sum(r["gold"] == OOS for r in predicted_oos)
        assert m["oos_precision"] == pytest.approx(hits / len(predicted_oos))
    in_scope = [r for r in rows if r["gold"] != OOS]
    assert m["in_scope_accuracy"] == pytest.approx(
        sum(r["pred"] == r["gold"] for r in in_scope) / len(in_scope)
    )
    assert record["predictor"]["scoring"] == "raw"


def test_abstention_threshold_is_chosen_on_validation_and_applied(evaluated: Path) -> None:
    m = json.loads((evaluated / "results.json").read_text())["metrics"]
    abstention = m["abstention"]
    t = m["abstain_threshold"]
    assert abstention["threshold"] == t and 0.0 <= t <= 1.0
    assert abstention["chosen_on"] == "validation" and abstention["target_accuracy"] == 0.5
    assert abstention["there"]["n"] == 23  # the validation split, predicted before test
    rows = _rows(evaluated / "predictions.jsonl")
    abstained = [r for r in rows if r.get("details", {}).get("abstained")]
    assert all(r["confidence"] < t and r["pred"] == OOS and "raw_pred" in r["details"] for r in abstained)
    assert all(r["confidence"] >= t for r in rows if r not in abstained)
    assert m["coverage"] == pytest.approx(1 - len(abstained) / len(rows))
    assert len(_rows(evaluated / "predictions_validation.jsonl")) == 23


def test_coverage_curve_side_file(evaluated: Path) -> None:
    record = json.loads((evaluated / "results.json").read_text())
    assert record["metrics"]["coverage_curve_file"] == "coverage_accuracy.json"
    assert "coverage_curve" not in record["metrics"]
    curve = json.loads((evaluated / "coverage_accuracy.json").read_text())
    assert curve["split"] == "test" and curve["abstain_threshold"] == record["metrics"]["abstain_threshold"]
    assert curve["coverage"][-1] == 1.0 and curve["coverage"] == sorted(curve["coverage"])
    assert curve["threshold"] == sorted(curve["threshold"], reverse=True)
    rows = _rows(evaluated / "predictions.jsonl")
    raw_right = [(r.get("details") or {}).get("raw_pred", r["pred"]) == r["gold"] for r in rows]
    assert curve["accuracy"][-1] == pytest.approx(sum(raw_right) / len(rows))  # everything answered
    assert not math.isnan(record["metrics"]["accuracy_coverage_auc"])
    assert (evaluated / "coverage_accuracy.png").stat().st_size > 1000


def test_unknown_out_of_scope_label_is_one_clear_error(tmp_path: Path) -> None:
    proc = _evaluate(tmp_path, "task.out_of_scope_label=none_of_these")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "task.out_of_scope_label='none_of_these' is not one of the 4 training labels" in proc.stderr, (
        proc.stderr[-1500:]
    )


def test_held_out_intents_become_out_of_scope_traffic_only_abstention_answers(tmp_path: Path) -> None:
    """data.holdout_labels: the held-out intent leaves train/validation, its test rows are relabelled, the
    model never scores the new label, and abstention is what catches them."""
    proc = _evaluate(
        tmp_path, "data.holdout_labels=[technical_issue]", "data.out_of_scope_label=unknown_intent",
        "task.out_of_scope_label=unknown_intent", "task.abstain.enabled=true", "task.abstain.threshold=0.6",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "ev" / "results.json").read_text())
    changes = record["data"]["label_changes"]
    assert (
        changes["holdout_labels"] == ["technical_issue"] and changes["out_of_scope_label"] == "unknown_intent"
    )
    rows = _rows(tmp_path / "ev" / "predictions.jsonl")
    gold_new = [r for r in rows if r["gold"] == "unknown_intent"]
    assert len(gold_new) == changes["n_out_of_scope_test"] == record["metrics"]["n_out_of_scope"] > 0
    assert not any(r["gold"] == "technical_issue" for r in rows)
    # the label is reached only by abstaining: every such prediction is an abstention below the threshold
    for r in rows:
        assert r["pred"] != "technical_issue"
        if r["pred"] == "unknown_intent":
            assert r["details"]["abstained"] and r["confidence"] < 0.6
        assert "unknown_intent" not in (r.get("label_probs") or {}) or r["label_probs"]["unknown_intent"] == 0
    m = record["metrics"]
    assert m["oos_recall"] == pytest.approx(
        sum(r["pred"] == "unknown_intent" for r in gold_new) / len(gold_new)
    )
