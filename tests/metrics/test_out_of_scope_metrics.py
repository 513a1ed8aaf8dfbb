"""Out-of-scope detection, abstention thresholds and the coverage-accuracy curve: golden values by hand."""

from __future__ import annotations

import math

import pytest
import torch

from slmforge.metrics.classification import (
    ClassificationMetrics,
    accuracy_coverage_auc,
    choose_threshold,
    coverage_accuracy_curve,
    out_of_scope_metrics,
)

CONF = [0.9, 0.8, 0.8, 0.6, 0.3]
CORRECT = [1, 1, 0, 1, 0]


def test_curve_has_one_point_per_distinct_confidence_and_ties_move_together() -> None:
    curve = coverage_accuracy_curve(CONF, CORRECT)
    assert curve["threshold"] == [0.9, 0.8, 0.6, 0.3]
    assert curve["coverage"] == pytest.approx([0.2, 0.6, 0.8, 1.0])
    assert curve["accuracy"] == pytest.approx([1.0, 2 / 3, 0.75, 0.6])


def test_curve_does_not_depend_on_row_order() -> None:
    order = [3, 0, 4, 2, 1]
    shuffled = coverage_accuracy_curve([CONF[i] for i in order], [CORRECT[i] for i in order])
    assert shuffled == coverage_accuracy_curve(CONF, CORRECT)


def test_area_under_accuracy_coverage() -> None:
    # 1.0 * 0.2 + 2/3 * 0.4 + 0.75 * 0.2 + 0.6 * 0.2
    assert accuracy_coverage_auc(coverage_accuracy_curve(CONF, CORRECT)) == pytest.approx(0.7366667, abs=1e-6)
    assert math.isnan(accuracy_coverage_auc(coverage_accuracy_curve([], [])))


def test_threshold_is_the_lowest_that_meets_the_target() -> None:
    chosen = choose_threshold(CONF, CORRECT, 0.7)
    assert chosen == {
        "threshold": 0.6,
        "coverage": pytest.approx(0.8),
        "accuracy": 0.75,
        "answered_accuracy": pytest.approx(0.6),
        "met_target": True,
        "target_accuracy": 0.7,
        "rule": "selective_accuracy",
        "n": 5,
    }
    assert choose_threshold(CONF, CORRECT, 0.95)["threshold"] == 0.9
    assert choose_threshold(CONF, CORRECT, 0.5)["threshold"] == 0.3  # everything answered


def test_unreachable_target_takes_the_most_accurate_point() -> None:
    chosen = choose_threshold(CONF, [0, 1, 0, 0, 0], 0.9)
    assert chosen["met_target"] is False
    assert chosen["threshold"] == 0.8
    assert chosen["accuracy"] == pytest.approx(1 / 3)
    assert chosen["coverage"] == pytest.approx(0.6)


def test_out_of_scope_precision_recall_f1_auroc() -> None:
    got = out_of_scope_metrics(
        gold_oos=[True, True, False, False, False],
        pred_oos=[True, False, True, False, False],
        in_scope_score=[0.2, 0.6, 0.5, 0.9, 0.7],
    )
    # tp 1, fp 1, fn 1; in-scope scores (0.5, 0.9, 0.7) beat out-of-scope (0.2, 0.6) in 5 of 6 pairs.
    assert got == pytest.approx({"oos_precision": 0.5, "oos_recall": 0.5, "oos_f1": 0.5, "oos_auroc": 5 / 6})


def test_auroc_ties_count_half_and_needs_both_classes() -> None:
    assert out_of_scope_metrics([True, False], [False, False], [0.5, 0.5])["oos_auroc"] == 0.5
    none = out_of_scope_metrics([False, False], [True, False], [0.1, 0.9])
    assert math.isnan(none["oos_auroc"])
    assert none["oos_precision"] == 0.0 and none["oos_recall"] == 0.0 and none["oos_f1"] == 0.0


def test_final_predictions_drive_the_confusion_matrix_and_calibration_keeps_the_distribution() -> None:
    probs = torch.tensor([[0.7, 0.3], [0.6, 0.4]])
    plain = ClassificationMetrics(["a", "b"])
    plain.update(probs, ["a", "b"])
    overridden = ClassificationMetrics(["a", "b"])
    overridden.update(probs, ["a", "b"], pred=[1, 1])  # the first row abstained onto label b
    p, o = plain.compute(), overridden.compute()
    assert p["confusion_matrix"] == [[1, 0], [1, 0]] and p["accuracy"] == 0.5
    assert o["confusion_matrix"] == [[0, 1], [0, 1]] and o["accuracy"] == 0.5
    assert o["per_class_f1"] == pytest.approx({"a": 0.0, "b": 2 / 3})
    for key in ("ece", "brier", "nll"):
        assert o[key] == pytest.approx(p[key])
    with pytest.raises(ValueError, match="label indices"):
        overridden.update(probs, ["a", "b"], pred=[0, 2])
