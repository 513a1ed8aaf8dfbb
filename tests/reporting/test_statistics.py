"""Confidence intervals and paired tests, checked against closed forms (Wald interval, binomial McNemar)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slmforge.errors import RecordError
from slmforge.records import PredictionRow
from slmforge.reporting.statistics import bootstrap_mean, mcnemar_p, paired_bootstrap_difference


def _rows(correct: list[float], prefix: str = "r") -> list[PredictionRow]:
    return [PredictionRow(id=f"{prefix}{i}", text="", gold="a", pred="a", confidence=None, correct=c,
                          latency_ms=1.0) for i, c in enumerate(correct)]  # fmt: skip


def test_bootstrap_interval_matches_the_normal_approximation_for_accuracy() -> None:
    scores = [1.0] * 80 + [0.0] * 20  # accuracy 0.8 on 100 rows
    ci = bootstrap_mean(scores, resamples=4000, seed=1)
    half = 1.96 * math.sqrt(0.8 * 0.2 / 100)  # Wald interval: 0.0784
    assert ci.estimate == 0.8
    assert ci.low == pytest.approx(0.8 - half, abs=0.015) and ci.high == pytest.approx(0.8 + half, abs=0.015)
    assert bootstrap_mean(scores, seed=1) == bootstrap_mean(scores, seed=1)  # seeded: reproducible


def test_a_two_point_gap_on_120_rows_is_not_significant_and_a_large_one_is() -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(120) < 0.80).astype(float)
    close = base.copy()
    flip = np.flatnonzero(base == 0)[:2]  # b gets 2 more rows right: +1.7 points
    close[flip] = 1.0
    diff = paired_bootstrap_difference(_rows(list(close)), _rows(list(base)))
    assert diff.estimate == pytest.approx(2 / 120) and diff.contains(0.0)
    assert mcnemar_p(_rows(list(close)), _rows(list(base))) == pytest.approx(
        0.5
    )  # 2 vs 0 discordant: 2 * 0.5^2

    far = np.ones(120)
    big = paired_bootstrap_difference(_rows(list(far)), _rows(list(base)))
    assert big.low > 0  # the whole interval above zero
    n_wrong = int((base == 0).sum())
    assert mcnemar_p(_rows(list(far)), _rows(list(base))) == pytest.approx(2 * 0.5**n_wrong)


def test_paired_comparisons_refuse_different_rows() -> None:
    with pytest.raises(RecordError, match="different rows"):
        paired_bootstrap_difference(_rows([1.0, 0.0]), _rows([1.0, 0.0], prefix="x"))
    assert mcnemar_p(_rows([1.0, 0.0]), _rows([1.0, 0.0])) == 1.0  # never disagree
