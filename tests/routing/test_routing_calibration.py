"""Temperature scaling and calibration metrics, checked by hand and on a sharpened synthetic fixture."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slmforge.records import PredictionRow
from slmforge.routing import (
    RoutingError,
    apply_temperature,
    calibration_report,
    calibration_report_rows,
    fit_temperature,
    fit_temperature_rows,
    recalibrate_rows,
    rows_to_arrays,
)

# (probs, gold): top confidences 0.9 right, 0.8 wrong, 0.7 right, 0.6 right.
HAND_PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
HAND_GOLD = np.array([0, 1, 1, 0])


def test_ece_brier_nll_by_hand() -> None:
    rep = calibration_report(HAND_PROBS, HAND_GOLD, n_bins=5)
    # Bins (lo, hi]: 0.9 -> (0.8, 1]; 0.8 and 0.7 -> (0.6, 0.8]; 0.6 -> (0.4, 0.6].
    # ECE = |1 - 0.9|*1/4 + |0.5 - 0.75|*2/4 + |1 - 0.6|*1/4 = 0.025 + 0.125 + 0.1
    assert rep["ece"] == pytest.approx(0.25)
    # Brier = (0.02 + 1.28 + 0.18 + 0.32) / 4
    assert rep["brier"] == pytest.approx(0.45)
    assert rep["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.2) + math.log(0.7) + math.log(0.6)) / 4)
    assert rep["accuracy"] == pytest.approx(0.75)
    assert [b["count"] for b in rep["bins"]] == [0, 0, 1, 2, 1]
    assert rep["bins"][3]["confidence"] == pytest.approx(0.75)
    assert rep["bins"][3]["accuracy"] == pytest.approx(0.5)
    assert rep["bins"][0]["confidence"] is None  # empty bins are kept, valued None
    assert rep["bins"][4]["lo"] == pytest.approx(0.8) and rep["bins"][4]["hi"] == pytest.approx(1.0)


def test_perfectly_calibrated_bin_has_zero_ece() -> None:
    probs = np.array([[0.5, 0.5]] * 4)
    rep = calibration_report(probs, np.array([0, 1, 0, 1]), n_bins=10)
    # argmax is label 0 for all, right half the time at confidence 0.5.
    assert rep["ece"] == pytest.approx(0.0)


def _sharpened_fixture(n: int = 4000, c: int = 4, sharpen: float = 0.3, seed: int = 0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, size=(n, c))
    true_p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(c, p=p) for p in true_p])
    sharp = np.exp(logits / sharpen)  # over-confident: the calibrated distribution at T = 0.3
    return true_p, sharp / sharp.sum(axis=1, keepdims=True), gold


def test_temperature_recovers_sharpening_and_lowers_nll() -> None:
    true_p, sharp, gold = _sharpened_fixture()
    t = fit_temperature(sharp, gold)
    assert t == pytest.approx(1 / 0.3, rel=0.1)  # undoes the sharpening
    before = calibration_report(sharp, gold)
    after = calibration_report(apply_temperature(sharp, t), gold)
    assert after["nll"] < before["nll"] - 0.1
    assert after["ece"] < before["ece"] / 2
    assert after["accuracy"] == before["accuracy"]  # scaling never changes the argmax
    # On the already calibrated distribution the fitted temperature stays near 1.
    assert fit_temperature(true_p, gold) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(sharp, gold) == t  # deterministic


def test_apply_temperature_basics() -> None:
    p = np.array([[2.0, 1.0, 1.0]])  # unnormalised on purpose
    np.testing.assert_allclose(apply_temperature(p, 1.0), [[0.5, 0.25, 0.25]])
    # T = 2 takes square roots of the probabilities before renormalising.
    s = np.sqrt([0.5, 0.25, 0.25])
    np.testing.assert_allclose(apply_temperature(p, 2.0), [s / s.sum()])
    with pytest.raises(RoutingError, match="temperature"):
        apply_temperature(p, 0.0)


def _rows() -> list[PredictionRow]:
    return [
        PredictionRow("1", "", "neg", "pos", 0.8, 0.0, 1.0, label_probs={"pos": 0.8, "neg": 0.2}),
        PredictionRow("2", "", "pos", "pos", 0.9, 1.0, 1.0, label_probs={"pos": 0.9, "neg": 0.1}),
        PredictionRow("3", "", "neu", "neg", 0.6, 0.0, 1.0, label_probs={"neg": 0.6, "pos": 0.4}),
    ]


def test_rows_to_arrays_label_order_and_gold() -> None:
    probs, gold, labels = rows_to_arrays(_rows())
    assert labels == ["neg", "neu", "pos"]  # sorted union, including a gold label never scored
    np.testing.assert_allclose(probs, [[0.2, 0, 0.8], [0.1, 0, 0.9], [0.6, 0, 0.4]])
    assert gold.tolist() == [0, 2, 1]
    assert fit_temperature_rows(_rows()) > 0
    rep = calibration_report_rows(_rows(), temperature=1.0, n_bins=5)
    assert rep["accuracy"] == pytest.approx(1 / 3) and rep["temperature"] == 1.0


def test_rows_without_label_probs_name_the_file() -> None:
    rows = [*_rows(), PredictionRow("4", "", "pos", "pos", 0.7, 1.0, 1.0)]
    with pytest.raises(
        RoutingError, match=r"runs/slm/predictions\.jsonl: 1 of 4 rows have no label_probs.*'4'"
    ):
        rows_to_arrays(rows, where="runs/slm/predictions.jsonl")
    with pytest.raises(RoutingError, match="no label_probs"):
        recalibrate_rows(rows, 2.0)


def test_recalibrate_rows_softens_confidence_without_mutating() -> None:
    rows = _rows()
    new = recalibrate_rows(rows, 2.0)
    s = np.sqrt([0.8, 0.2])
    assert new[0].confidence == pytest.approx(s[0] / s.sum())
    assert new[0].label_probs["pos"] == pytest.approx(s[0] / s.sum())
    assert [r.pred for r in new] == [r.pred for r in rows]
    assert rows[0].confidence == 0.8 and rows[0].label_probs == {"pos": 0.8, "neg": 0.2}
