"""Pareto fronts and the weighted decision score that orders the leaderboard.

The Pareto front answers "which options are not beaten on every axis at once"; the decision score then
picks one point on (or near) it by the user's priorities. Both are pure functions of a DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

MAX, MIN = "max", "min"


def pareto_front(
    df: pd.DataFrame,
    quality_col: str,
    cost_col: str,
    *,
    maximize: bool = True,
    eligible: pd.Series | None = None,
) -> pd.Series:
    """Boolean mask (aligned to ``df.index``) of rows on the quality-vs-cost Pareto front.

    Quality is maximised (``maximize=False``: minimised, for an error rate) and cost minimised. A row is
    dominated when another row is at least as good on both axes and strictly better on one; exact ties
    dominate neither, so duplicates are all kept. Rows with a NaN on either axis, and rows outside
    ``eligible`` (a boolean mask: e.g. runs that answered only part of the examples), are never on the
    front and dominate nothing.
    """
    q = pd.to_numeric(df[quality_col], errors="coerce").to_numpy(dtype=float)
    if not maximize:
        q = -q
    c = pd.to_numeric(df[cost_col], errors="coerce").to_numpy(dtype=float)
    valid = ~(np.isnan(q) | np.isnan(c))
    if eligible is not None:
        valid &= eligible.reindex(df.index, fill_value=False).to_numpy(dtype=bool)
    on_front = np.zeros(len(df), dtype=bool)
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = others & (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))
        on_front[i] = not dominated.any()
    return pd.Series(on_front, index=df.index, name="pareto")


def decision_score(
    df: pd.DataFrame, weights: Mapping[str, float], directions: Mapping[str, str] | None = None
) -> pd.Series:
    """Weighted sum of min-max normalised columns, in [0, 1] (1 = best on every weighted column).

    ``weights`` maps column -> weight (need not sum to 1; they are normalised); ``directions`` maps
    column -> ``"max"`` (higher is better, e.g. accuracy) or ``"min"`` (lower is better, e.g. latency,
    cost); columns missing from ``directions`` default to ``"max"``. A column where every row is equal
    cannot discriminate and gives each row its full weight. NaN counts as the worst value, so a row
    missing a number is never promoted by it. Min-max is linear: with costs spanning orders of magnitude
    all cheap options land near 1 on cost, which is the intended reading ("cheap enough").
    """
    directions = dict(directions or {})
    active = {col: float(w) for col, w in weights.items() if float(w) != 0.0}
    if any(w < 0 for w in active.values()):
        raise ValueError(f"decision weights must be >= 0, got {dict(weights)}")
    missing = [col for col in active if col not in df.columns]
    if missing:
        raise KeyError(f"decision_score: column(s) {missing} not in the leaderboard ({list(df.columns)})")
    total = sum(active.values())
    if total == 0 or len(df) == 0:
        return pd.Series(np.zeros(len(df)), index=df.index, name="score")
    score = np.zeros(len(df))
    for col, w in active.items():
        direction = directions.get(col, MAX)
        if direction not in (MAX, MIN):
            raise ValueError(f"direction for {col} must be 'max' or 'min', got {direction!r}")
        x = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        finite = x[np.isfinite(x)]
        if finite.size == 0 or finite.max() == finite.min():
            norm = np.where(np.isfinite(x), 1.0, 0.0)
        else:
            lo, hi = finite.min(), finite.max()
            norm = (x - lo) / (hi - lo)
            if direction == MIN:
                norm = 1.0 - norm
            norm = np.where(np.isfinite(norm), norm, 0.0)
        score += w * norm
    return pd.Series(score / total, index=df.index, name="score")
