"""Temperature scaling and calibration metrics for a predictor's label distributions.

A confidence threshold only means something if confidence tracks accuracy. Small fine-tuned models are
often over-confident, so before sweeping thresholds we fit one temperature ``T`` on held-out
predictions (Guo et al., 2017). Predictions hold probabilities, not logits, so ``log p`` stands in for
the logits: ``softmax(log p / T)``. This leaves the argmax (the prediction) unchanged and only
reshapes how sure the model claims to be.

All functions are pure numpy and deterministic.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from slmforge.records import PredictionRow
from slmforge.routing.errors import RoutingError

# log(0) would make a single confidently-wrong example dominate the NLL with an infinity.
_PROB_FLOOR = 1e-12
# The fitted temperature is clamped to this range: beyond it the NLL surface is flat in practice and
# an unbounded search only chases numerical noise (e.g. T -> 0 when every prediction is correct).
T_MIN, T_MAX = 1e-2, 1e2


def _normalise(probs: np.ndarray) -> np.ndarray:
    """Rows rescaled to sum to one (label_probs restricted to the label set need not sum to one)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise RoutingError(f"expected a non-empty [N, C] probability array, got shape {p.shape}")
    s = p.sum(axis=1, keepdims=True)
    if np.any(s <= 0):
        raise RoutingError("some rows of label probabilities are all zero; cannot normalise them")
    return p / s


def _check_gold(gold_idx: np.ndarray, n: int, c: int) -> np.ndarray:
    g = np.asarray(gold_idx)
    if g.shape != (n,):
        raise RoutingError(f"gold_idx has shape {g.shape}; expected ({n},) to match the probabilities")
    if not np.issubdtype(g.dtype, np.integer):
        raise RoutingError("gold_idx must hold integer label indices")
    if np.any((g < 0) | (g >= c)):
        raise RoutingError(f"gold_idx values must lie in [0, {c}); got {g.min()}..{g.max()}")
    return g.astype(np.int64)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise; T > 1 softens, T < 1 sharpens, T = 1 only renormalises."""
    if not (temperature > 0 and math.isfinite(temperature)):
        raise RoutingError(f"temperature must be a positive finite number, got {temperature}")
    logp = np.log(np.clip(_normalise(probs), _PROB_FLOOR, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)  # stable softmax
    e = np.exp(logp)
    return e / e.sum(axis=1, keepdims=True)


def _nll_at_beta(logp: np.ndarray, gold: np.ndarray, beta: float) -> float:
    z = beta * logp
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(gold)), gold]))


def fit_temperature(label_probs: np.ndarray, gold_idx: np.ndarray) -> float:
    """The temperature T in [T_MIN, T_MAX] minimising the NLL of ``softmax(log p / T)``.

    The NLL is convex in ``1/T`` (a log-sum-exp of linear functions minus a linear term), hence
    unimodal in ``log T``, so a golden-section search on ``log T`` finds the global minimum
    deterministically without a gradient or an optimiser's tolerances.
    """
    p = _normalise(label_probs)
    gold = _check_gold(gold_idx, p.shape[0], p.shape[1])
    logp = np.log(np.clip(p, _PROB_FLOOR, None))

    def f(u: float) -> float:  # u = log T
        return _nll_at_beta(logp, gold, math.exp(-u))

    lo, hi = math.log(T_MIN), math.log(T_MAX)
    invphi = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - invphi * (b - a), a + invphi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(100):  # width shrinks by 0.618 per step: 100 steps reach float precision
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - invphi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + invphi * (b - a)
            fd = f(d)
    u = (a + b) / 2
    # The minimum may sit on the boundary (the search never evaluates the endpoints exactly).
    best = min((f(x), x) for x in (lo, u, hi))[1]
    return float(math.exp(best))


def nll(probs: np.ndarray, gold_idx: np.ndarray) -> float:
    """Mean negative log-likelihood of the gold label (probabilities floored at 1e-12)."""
    p = _normalise(probs)
    gold = _check_gold(gold_idx, p.shape[0], p.shape[1])
    return float(-np.mean(np.log(np.clip(p[np.arange(len(gold)), gold], _PROB_FLOOR, None))))


def calibration_report(probs: np.ndarray, gold_idx: np.ndarray, n_bins: int = 15) -> dict[str, Any]:
    """ECE (top-label, equal-width bins), multiclass Brier score, NLL and accuracy, plus the bins.

    Bins are ``(lo, hi]`` (the first also holds 0). ``ece = sum_b |acc_b - conf_b| * n_b / N``.
    Brier is ``mean_i sum_c (p_ic - y_ic)^2`` (0 is perfect, 2 is the worst). Empty bins are listed
    with ``confidence``/``accuracy`` None so a plot can show the full range.
    """
    if n_bins < 1:
        raise RoutingError(f"n_bins must be >= 1, got {n_bins}")
    p = _normalise(probs)
    n, c = p.shape
    gold = _check_gold(gold_idx, n, c)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == gold).astype(np.float64)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), gold] = 1.0
    brier = float(np.mean(np.sum((p - onehot) ** 2, axis=1)))

    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Count of interior edges strictly below the confidence = index of its (lo, hi] bin.
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    bins = []
    ece = 0.0
    for b in range(n_bins):
        mask = idx == b
        count = int(mask.sum())
        if count:
            bconf, bacc = float(conf[mask].mean()), float(correct[mask].mean())
            ece += abs(bacc - bconf) * count / n
        else:
            bconf = bacc = None
        bins.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": count,
                "confidence": bconf,
                "accuracy": bacc,
            }
        )
    return {
        "ece": float(ece),
        "brier": brier,
        "nll": nll(p, gold),
        "accuracy": float(correct.mean()),
        "n": n,
        "n_bins": n_bins,
        "bins": bins,
    }


def rows_to_arrays(
    rows: Sequence[PredictionRow], where: str = "<predictions>"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(probs [N, C], gold_idx [N], labels)`` from rows carrying ``label_probs``.

    The label order is the sorted union of all ``label_probs`` keys and gold labels (a gold label the
    model never scored gets probability 0, which the NLL floors rather than ignores). ``where`` names
    the file in errors.
    """
    if not rows:
        raise RoutingError(f"{where}: no prediction rows to calibrate on")
    missing = [r.id for r in rows if not r.label_probs]
    if missing:
        raise RoutingError(
            f"{where}: {len(missing)} of {len(rows)} rows have no label_probs (e.g. ids {missing[:3]}); "
            "calibration needs the full label distribution, so evaluate a classification predictor "
            "that records label probabilities, or route with calibrate=False"
        )
    bad_gold = [r.id for r in rows if not isinstance(r.gold, str)]
    if bad_gold:
        raise RoutingError(
            f"{where}: gold of ids {bad_gold[:3]} is not a label string; calibration only applies "
            "to classification predictions"
        )
    labels = sorted({k for r in rows for k in r.label_probs} | {r.gold for r in rows})  # type: ignore[union-attr]
    col = {lab: j for j, lab in enumerate(labels)}
    probs = np.zeros((len(rows), len(labels)), dtype=np.float64)
    for i, r in enumerate(rows):
        for k, v in r.label_probs.items():  # type: ignore[union-attr]
            probs[i, col[k]] = float(v)
    gold_idx = np.array([col[r.gold] for r in rows], dtype=np.int64)
    if np.any(probs.sum(axis=1) <= 0):
        bad = [rows[i].id for i in np.flatnonzero(probs.sum(axis=1) <= 0)[:3]]
        raise RoutingError(f"{where}: label_probs of ids {bad} are all zero")
    return probs, gold_idx, labels


def fit_temperature_rows(rows: Sequence[PredictionRow], where: str = "<predictions>") -> float:
    """:func:`fit_temperature` on prediction rows (see :func:`rows_to_arrays`)."""
    probs, gold_idx, _ = rows_to_arrays(rows, where)
    return fit_temperature(probs, gold_idx)


def calibration_report_rows(
    rows: Sequence[PredictionRow], temperature: float = 1.0, n_bins: int = 15, where: str = "<predictions>"
) -> dict[str, Any]:
    """:func:`calibration_report` of rows' label distributions after temperature ``temperature``."""
    probs, gold_idx, _ = rows_to_arrays(rows, where)
    report = calibration_report(apply_temperature(probs, temperature), gold_idx, n_bins=n_bins)
    report["temperature"] = float(temperature)
    return report


def recalibrate_rows(
    rows: Sequence[PredictionRow], temperature: float, where: str = "<predictions>"
) -> list[PredictionRow]:
    """Copies of ``rows`` with ``label_probs`` temperature-scaled and ``confidence`` recomputed.

    The new confidence is the scaled probability of the row's own ``pred`` when the distribution
    scores it (so it stays "probability of what the predictor answered"), else the top probability.
    The inputs are not modified.
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise RoutingError(f"temperature must be a positive finite number, got {temperature}")
    missing = [r.id for r in rows if not r.label_probs]
    if missing:
        raise RoutingError(
            f"{where}: {len(missing)} of {len(rows)} rows have no label_probs (e.g. ids {missing[:3]}); "
            "cannot recalibrate their confidence"
        )
    out = []
    for r in rows:
        keys = list(r.label_probs)  # type: ignore[arg-type]
        scaled = apply_temperature(np.array([[r.label_probs[k] for k in keys]]), temperature)[0]  # type: ignore[index]
        new = dict(zip(keys, (float(x) for x in scaled), strict=True))
        conf = new[r.pred] if isinstance(r.pred, str) and r.pred in new else float(scaled.max())
        out.append(dataclasses.replace(r, label_probs=new, confidence=conf))
    return out
