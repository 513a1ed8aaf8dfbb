"""Confidence-threshold routing: the cheap predictor answers unless it is unsure, then the expensive one does.

Given both predictors' rows for the same examples, an example escalates to the expensive predictor when
the cheap one's confidence is below a threshold ``t`` (rows without a confidence always escalate). The
cheap predictor always runs first, so an escalated example pays both latencies and both costs. Sweeping
``t`` over every distinct confidence traces every distinct routing decision the data allows; each is a
:class:`RoutingPoint` (quality, escalated share, latency, cost per 1k requests).

Everything here is computed from ``predictions.jsonl`` rows alone: ``correct`` is the per-example metric
(accuracy for classification, a per-example score for extraction), so the routed metric is its mean.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from slmforge.records import PredictionRow
from slmforge.routing.errors import RoutingError

# The "escalate everything" threshold: above any confidence, including exactly 1.0.
ALL_THRESHOLD = 1.0 + 1e-9
# Metric/cost comparisons against a target/budget tolerate float noise from means of 0/1 values.
_TOL = 1e-9


@dataclass(frozen=True)
class RoutingPoint:
    """One routing operating point.

    ``kind`` is ``"threshold"`` (cheap first, escalate below ``threshold``), ``"tiered"`` (tier rules
    plus a threshold), or ``"cheap_only"``/``"expensive_only"`` (references; ``threshold`` is None).
    ``escalated_share`` is the share of examples answered by the expensive predictor, whatever sent them
    there; ``tier_share`` the share sent there by a tier rule. Latencies are per example in ms.
    """

    threshold: float | None
    n: int
    n_escalated: int
    escalated_share: float
    metric: float
    latency_mean_ms: float
    latency_p95_ms: float
    cost_per_1k_usd: float
    kind: str = "threshold"
    n_tier_routed: int = 0
    tier_share: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoutingPoint:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def align_rows(
    cheap: Sequence[PredictionRow],
    expensive: Sequence[PredictionRow],
    cheap_name: str = "cheap",
    expensive_name: str = "expensive",
) -> tuple[list[PredictionRow], list[PredictionRow]]:
    """Both row lists in the cheap list's order, paired by ``id``; RoutingError unless the ids match."""
    for rows, name in ((cheap, cheap_name), (expensive, expensive_name)):
        ids = [r.id for r in rows]
        if len(set(ids)) != len(ids):
            dup = sorted(i for i, k in Counter(ids).items() if k > 1)[:3]
            raise RoutingError(f"{name}: duplicate example ids (e.g. {dup}); each id must appear once")
    if not cheap:
        raise RoutingError(f"{cheap_name}: no prediction rows")
    by_id = {r.id: r for r in expensive}
    cheap_ids = {r.id for r in cheap}
    only_cheap = cheap_ids - by_id.keys()
    only_exp = by_id.keys() - cheap_ids
    if only_cheap or only_exp:
        example = sorted(only_cheap | only_exp)[:3]
        raise RoutingError(
            f"the two predictors were evaluated on different examples: {len(only_exp)} id(s) missing from "
            f"{cheap_name} and {len(only_cheap)} missing from {expensive_name} (e.g. {example}); both "
            "predictors must be evaluated on the same split (same data config, seed and limit)"
        )
    return list(cheap), [by_id[r.id] for r in cheap]


def _arrays(cheap: Sequence[PredictionRow], exp: Sequence[PredictionRow]) -> dict[str, np.ndarray]:
    conf = np.array([np.nan if r.confidence is None else float(r.confidence) for r in cheap])
    return {
        "conf": conf,
        "c_ok": np.array([float(r.correct) for r in cheap]),
        "e_ok": np.array([float(r.correct) for r in exp]),
        "c_lat": np.array([float(r.latency_ms) for r in cheap]),
        "e_lat": np.array([float(r.latency_ms) for r in exp]),
    }


def _check_costs(cost_cheap: float, cost_exp: float) -> None:
    for name, c in (("cost_cheap", cost_cheap), ("cost_exp", cost_exp)):
        if c is None or not math.isfinite(c) or c < 0:
            raise RoutingError(f"{name} must be a non-negative USD cost per request, got {c}")


def _point(
    a: dict[str, np.ndarray],
    threshold: float,
    cost_cheap: float,
    cost_exp: float,
    pre_routed: np.ndarray | None = None,
    post_escalate: np.ndarray | None = None,
    kind: str = "threshold",
) -> RoutingPoint:
    """The point for one threshold.

    ``pre_routed``: examples sent to the expensive predictor before the cheap one runs (expensive
    latency and cost only). ``post_escalate``: examples escalated after the cheap one ran regardless of
    its confidence (both latencies and costs).
    """
    n = len(a["conf"])
    pre = np.zeros(n, bool) if pre_routed is None else pre_routed
    post = np.zeros(n, bool) if post_escalate is None else post_escalate
    # NaN (no confidence) compares False with everything, so test it explicitly: it always escalates.
    low = np.isnan(a["conf"]) | (a["conf"] < threshold)
    cheap_ran = ~pre
    escalated = pre | (cheap_ran & (post | low))
    score = np.where(escalated, a["e_ok"], a["c_ok"])
    latency = np.where(cheap_ran, a["c_lat"], 0.0) + np.where(escalated, a["e_lat"], 0.0)
    cost = np.where(cheap_ran, cost_cheap, 0.0) + np.where(escalated, cost_exp, 0.0)
    n_tier = int((pre | (cheap_ran & post)).sum())
    return RoutingPoint(
        threshold=float(threshold),
        n=n,
        n_escalated=int(escalated.sum()),
        escalated_share=float(escalated.mean()),
        metric=float(score.mean()),
        latency_mean_ms=float(latency.mean()),
        latency_p95_ms=float(np.percentile(latency, 95)),
        cost_per_1k_usd=float(1000.0 * cost.mean()),
        kind=kind,
        n_tier_routed=n_tier,
        tier_share=n_tier / n,
    )


def candidate_thresholds(cheap: Sequence[PredictionRow]) -> list[float]:
    """0, every distinct cheap confidence, and :data:`ALL_THRESHOLD`, ascending."""
    confs = {float(r.confidence) for r in cheap if r.confidence is not None}
    return sorted({0.0, *confs, ALL_THRESHOLD})


def _sweep(
    cheap: Sequence[PredictionRow],
    exp: Sequence[PredictionRow],
    cost_cheap: float,
    cost_exp: float,
    pre_routed: np.ndarray | None = None,
    post_escalate: np.ndarray | None = None,
    kind: str = "threshold",
) -> list[RoutingPoint]:
    a = _arrays(cheap, exp)
    points: list[RoutingPoint] = []
    for t in candidate_thresholds(cheap):
        p = _point(a, t, cost_cheap, cost_exp, pre_routed, post_escalate, kind)
        # Escalation sets are nested as t grows, so an unchanged count means an unchanged decision;
        # keep the lowest threshold that gives it (e.g. t=0 and t=min confidence both escalate nothing).
        if points and p.n_escalated == points[-1].n_escalated:
            continue
        points.append(p)
    return points


def sweep_thresholds(
    cheap: Sequence[PredictionRow],
    expensive: Sequence[PredictionRow],
    cost_cheap: float,
    cost_exp: float,
    cheap_name: str = "cheap",
    expensive_name: str = "expensive",
) -> list[RoutingPoint]:
    """One :class:`RoutingPoint` per distinct routing decision, by ascending threshold.

    ``cost_cheap``/``cost_exp`` are USD per request. Cost per 1k requests is
    ``1000 * (cost_cheap + escalated_share * cost_exp)``.
    """
    _check_costs(cost_cheap, cost_exp)
    c, e = align_rows(cheap, expensive, cheap_name, expensive_name)
    return _sweep(c, e, cost_cheap, cost_exp)


def evaluate_threshold(
    cheap: Sequence[PredictionRow],
    expensive: Sequence[PredictionRow],
    threshold: float,
    cost_cheap: float,
    cost_exp: float,
) -> RoutingPoint:
    """The point for one given threshold (e.g. one chosen on validation, measured on test)."""
    _check_costs(cost_cheap, cost_exp)
    c, e = align_rows(cheap, expensive)
    return _point(_arrays(c, e), threshold, cost_cheap, cost_exp)


def single_predictor_point(rows: Sequence[PredictionRow], cost_per_request: float, kind: str) -> RoutingPoint:
    """A reference point: every example answered by one predictor (``kind`` cheap_only/expensive_only)."""
    if not rows:
        raise RoutingError(f"{kind}: no prediction rows")
    ok = np.array([float(r.correct) for r in rows])
    lat = np.array([float(r.latency_ms) for r in rows])
    expensive = kind == "expensive_only"
    return RoutingPoint(
        threshold=None,
        n=len(rows),
        n_escalated=len(rows) if expensive else 0,
        escalated_share=1.0 if expensive else 0.0,
        metric=float(ok.mean()),
        latency_mean_ms=float(lat.mean()),
        latency_p95_ms=float(np.percentile(lat, 95)),
        cost_per_1k_usd=1000.0 * float(cost_per_request),
        kind=kind,
    )


def _fmt_t(t: float | None) -> str:
    if t is None:
        return "n/a"
    return "1 (escalate all)" if t > 1.0 else f"{t:.2f}"


def choose_threshold(
    points: Sequence[RoutingPoint],
    target_metric: float | None = None,
    budget_per_1k: float | None = None,
    metric_name: str = "metric",
) -> RoutingPoint:
    """Pick the operating point.

    - ``target_metric``: the cheapest point whose metric reaches it (ties: less escalation);
    - ``budget_per_1k``: the best metric costing at most the budget (ties: cheaper, less escalation);
    - both: the cheapest point meeting the target within the budget;
    - neither: the best metric (ties: cheaper, less escalation).

    Raises RoutingError naming the best achievable metric / lowest cost when the request cannot be met.
    """
    if not points:
        raise RoutingError("no routing points to choose from")
    best = max(points, key=lambda p: (p.metric, -p.cost_per_1k_usd, -p.escalated_share))
    cheapest = min(points, key=lambda p: (p.cost_per_1k_usd, -p.metric, p.escalated_share))
    ok = list(points)
    if target_metric is not None:
        ok = [p for p in ok if p.metric >= target_metric - _TOL]
        if not ok:
            raise RoutingError(
                f"no threshold reaches {metric_name} >= {target_metric:.4f}: the best achievable is "
                f"{best.metric:.4f} (threshold {_fmt_t(best.threshold)}, ${best.cost_per_1k_usd:.4f} per 1k "
                "requests); lower the target, or improve either predictor"
            )
    if budget_per_1k is not None:
        within = [p for p in ok if p.cost_per_1k_usd <= budget_per_1k + _TOL]
        if not within:
            if target_metric is not None:
                cheapest_ok = min(ok, key=lambda p: p.cost_per_1k_usd)
                raise RoutingError(
                    f"{metric_name} >= {target_metric:.4f} is reachable but not within ${budget_per_1k:.4f} per "
                    f"1k requests: the cheapest point reaching it costs ${cheapest_ok.cost_per_1k_usd:.4f} "
                    f"(threshold {_fmt_t(cheapest_ok.threshold)}); raise the budget or lower the target"
                )
            raise RoutingError(
                f"no threshold fits a budget of ${budget_per_1k:.4f} per 1k requests: the lowest cost is "
                f"${cheapest.cost_per_1k_usd:.4f} (threshold {_fmt_t(cheapest.threshold)}, {metric_name} "
                f"{cheapest.metric:.4f}); raise the budget or lower the per-request costs"
            )
        ok = within
    if target_metric is not None:
        return min(ok, key=lambda p: (p.cost_per_1k_usd, p.escalated_share))
    return max(ok, key=lambda p: (p.metric, -p.cost_per_1k_usd, -p.escalated_share))


def describe(
    point: RoutingPoint,
    cheap_name: str,
    exp_name: str,
    exp_only_metric: float,
    exp_only_cost: float,
    metric_name: str = "accuracy",
) -> str:
    """One sentence for a report, e.g.
    ``route 78% to smollm2-lora at threshold 0.83: accuracy 0.940 vs 0.950 gpt-4o-only, cost −71%``.
    """
    kept = 100.0 * (1.0 - point.escalated_share)
    if exp_only_cost > 0:
        change = 100.0 * (point.cost_per_1k_usd - exp_only_cost) / exp_only_cost
        sign = "−" if change < 0 else "+"
        cost = f"cost {sign}{abs(change):.0f}%"
    else:
        cost = f"cost ${point.cost_per_1k_usd:.4f} vs $0 per 1k requests"
    tiers = f" ({100 * point.tier_share:.0f}% sent by tier rules)" if point.n_tier_routed else ""
    return (
        f"route {kept:.0f}% to {cheap_name} at threshold {_fmt_t(point.threshold)}{tiers}: {metric_name} "
        f"{point.metric:.3f} vs {exp_only_metric:.3f} {exp_name}-only, {cost}"
    )
