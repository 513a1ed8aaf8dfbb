"""Voting ensembles over several predictors' rows for the same examples.

An ensemble is the other way to spend more compute per request: instead of escalating the hard cases,
every member answers every example and the answers are combined. Comparing its cost and quality with
routing on the same rows shows which way of spending is worth it.

- ``majority``: the most frequent ``pred``; ties go to the label with the highest summed confidence,
  then to the label whose first voter comes earliest in the member order.
- ``weighted``: the label with the highest ``sum(weight * confidence)``; ties go by member order.

A member row without a confidence counts with confidence 1.0 (a plain vote of its weight), so
predictors that report no probabilities still take part.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slmforge.records import PredictionRow
from slmforge.routing.errors import RoutingError

MODES = ("majority", "weighted")


def _key(pred: Any) -> Any:
    """A hashable vote key; structured predictions (extraction dicts) vote by their canonical JSON."""
    if isinstance(pred, str | int | float | bool) or pred is None:
        return pred
    return json.dumps(pred, sort_keys=True, default=str)


@dataclass
class EnsembleResult:
    """The combined predictions and their summary.

    ``accuracy`` is the share of examples whose voted ``pred`` equals ``gold``; ``metric`` is the mean
    of the task's per-example ``correct`` of the member row whose answer won (the same as accuracy for
    classification, the task's score for extraction). ``cost_per_1k_usd`` is None when no costs were given.
    """

    predictions: list[PredictionRow]
    accuracy: float
    metric: float
    latency_mean_ms: float
    latency_p95_ms: float
    cost_per_1k_usd: float | None
    mode: str
    parallel: bool
    members: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Everything but the per-example predictions (JSON-ready)."""
        d = dataclasses.asdict(self)
        d.pop("predictions")
        d["n"] = len(self.predictions)
        return d


def _align_all(rows_lists: Sequence[Sequence[PredictionRow]], names: list[str]) -> list[list[PredictionRow]]:
    first = rows_lists[0]
    ids = [r.id for r in first]
    if len(set(ids)) != len(ids):
        raise RoutingError(f"{names[0]}: duplicate example ids; each id must appear once")
    out = [list(first)]
    for rows, name in zip(rows_lists[1:], names[1:], strict=True):
        by_id = {r.id: r for r in rows}
        if len(by_id) != len(rows):
            raise RoutingError(f"{name}: duplicate example ids; each id must appear once")
        missing, extra = set(ids) - by_id.keys(), by_id.keys() - set(ids)
        if missing or extra:
            raise RoutingError(
                f"{name} and {names[0]} were evaluated on different examples: {len(missing)} id(s) missing "
                f"from {name}, {len(extra)} missing from {names[0]}; all members must be evaluated on the "
                "same split"
            )
        out.append([by_id[i] for i in ids])
    return out


def vote(
    rows_lists: Sequence[Sequence[PredictionRow]],
    weights: Sequence[float] | None = None,
    mode: str = "majority",
    costs: Sequence[float] | None = None,
    parallel: bool = True,
    names: Sequence[str] | None = None,
) -> EnsembleResult:
    """Combine several predictors' rows (aligned by ``id``, in the first list's order).

    ``weights`` (default all 1) apply in both modes (majority counts ``weight`` per vote). ``costs``
    are USD per request per member; the ensemble costs their sum. Latency per example is the slowest
    member's when members run in ``parallel``, else the sum.
    """
    if mode not in MODES:
        raise RoutingError(f"unknown ensemble mode {mode!r}; expected one of {list(MODES)}")
    m = len(rows_lists)
    if m < 1 or not rows_lists[0]:
        raise RoutingError("an ensemble needs at least one member with prediction rows")
    member_names = list(names) if names is not None else [f"member{i}" for i in range(m)]
    w = [1.0] * m if weights is None else [float(x) for x in weights]
    for what, seq in (("names", member_names), ("weights", w), ("costs", costs)):
        if seq is not None and len(seq) != m:
            raise RoutingError(f"{len(seq)} {what} for {m} ensemble members")
    if any(x < 0 for x in w):
        raise RoutingError(f"ensemble weights must be non-negative, got {w}")
    aligned = _align_all(rows_lists, member_names)

    out: list[PredictionRow] = []
    lat = np.zeros(len(aligned[0]))
    for i, members in enumerate(zip(*aligned, strict=True)):
        tally: dict[Any, list[float]] = {}  # key -> [votes, summed confidence, -first member index]
        first_row: dict[Any, PredictionRow] = {}
        for j, r in enumerate(members):
            k = _key(r.pred)
            conf = 1.0 if r.confidence is None else float(r.confidence)
            t = tally.setdefault(k, [0.0, 0.0, -float(j)])
            first_row.setdefault(k, r)
            if mode == "majority":
                t[0] += w[j]
                t[1] += conf
            else:
                t[0] += w[j] * conf
        # Max over (score, tie-break confidence, earliest member): the tuple order encodes the tie rules.
        win = max(tally, key=lambda k: tuple(tally[k]))
        total = sum(t[0] for t in tally.values())
        winner = first_row[win]
        gold = members[0].gold
        lat[i] = max(r.latency_ms for r in members) if parallel else sum(r.latency_ms for r in members)
        out.append(
            PredictionRow(
                id=winner.id,
                text=members[0].text,
                gold=gold,
                pred=winner.pred,
                confidence=tally[win][0] / total if total > 0 else None,
                correct=float(winner.correct),
                latency_ms=float(lat[i]),
                prompt_tokens=sum(r.prompt_tokens for r in members),
                completion_tokens=sum(r.completion_tokens for r in members),
                details={"votes": {str(k): v[0] for k, v in tally.items()}, "mode": mode},
            )
        )
    acc = float(np.mean([_key(r.pred) == _key(r.gold) for r in out]))
    return EnsembleResult(
        predictions=out,
        accuracy=acc,
        metric=float(np.mean([r.correct for r in out])),
        latency_mean_ms=float(lat.mean()),
        latency_p95_ms=float(np.percentile(lat, 95)),
        cost_per_1k_usd=None if costs is None else 1000.0 * float(sum(costs)),
        mode=mode,
        parallel=parallel,
        members=member_names,
        weights=w,
    )
