"""Plots write non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from slmforge.records import PredictionRow
from slmforge.routing import (
    apply_temperature,
    calibration_report,
    choose_threshold,
    single_predictor_point,
    sweep_thresholds,
)
from slmforge.routing.plots import plot_reliability, plot_routing_curve

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_routing_curve(tmp_path: Path) -> None:
    cheap = [
        PredictionRow(str(i), "", "g", "p", c, float(c > 0.5), 10.0) for i, c in enumerate([0.9, 0.7, 0.4])
    ]
    exp = [PredictionRow(str(i), "", "g", "p", 0.9, 1.0, 100.0) for i in range(3)]
    points = sweep_thresholds(cheap, exp, 0.0001, 0.001)
    path = plot_routing_curve(
        points,
        choose_threshold(points, target_metric=1.0),
        tmp_path / "figs" / "routing.png",
        cheap_only=single_predictor_point(cheap, 0.0001, "cheap_only"),
        expensive_only=single_predictor_point(exp, 0.001, "expensive_only"),
    )
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_plot_reliability(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=200)
    gold = rng.integers(0, 3, size=200)
    before = calibration_report(probs, gold)
    after = calibration_report(apply_temperature(probs, 3.0), gold) | {"temperature": 3.0}
    path = plot_reliability(before, after, tmp_path / "rel.png")
    assert path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC
    assert plot_reliability(before, None, tmp_path / "rel_only.png").stat().st_size > 1000
