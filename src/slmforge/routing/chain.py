"""Routing along a chain of three or more predictors (e.g. 135M → 270M → API), one threshold per tier.

Every request starts at the cheapest tier. Tier ``i`` (not the last) keeps the request when its own
(calibrated) confidence is at least its threshold ``t_i``; otherwise the request moves to tier ``i+1``.
The last tier answers whatever reaches it. A request answered by tier ``j`` paid the latency and cost of
tiers ``0..j`` (each ran in turn).

**Choosing the thresholds jointly, with the guarantee.** Learn-then-Test (see
:mod:`~slmforge.routing.guarantee`) needs the hypotheses ordered before the data is seen. A grid of
threshold tuples has no natural single order, so the tuples are tested along a few fixed *paths*
(:data:`PATH_OFFSETS`), each a fixed sequence from "everything to the last tier" to "everything kept by
the first tier": along path ``o`` and for ``λ`` descending over the grid, ``t_i = λ + o_i`` (or "escalate
all" while that exceeds 1). The tied path (all offsets 0) is always one; the others shift one tier's
threshold up by 0.25, so a tier whose confidences run higher can keep fewer requests. Each path is tested
by fixed sequence at ``delta / paths`` (Bonferroni across paths), so with probability >= 1 - delta every
rejected tuple on every path has expected routed quality >= target; the chosen tuple is the cheapest
rejected one by calibration cost (choosing among simultaneously valid tuples keeps the guarantee).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from slmforge.records import (
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    PredictionRow,
    read_predictions,
    read_results,
)
from slmforge.routing import guarantee as G
from slmforge.routing.calibration import fit_temperature_rows, recalibrate_rows
from slmforge.routing.errors import RoutingError
from slmforge.routing.policy import RoutingPolicy
from slmforge.routing.threshold import align_rows, single_predictor_point

# One path per entry of this list for a chain of k tiers, built by chain_paths(k): the tied path, then each
# non-final tier alone shifted up by this much. More paths find better tuples but split delta further.
PATH_SHIFT = 0.25
_TOL = 1e-9
_CHUNK = 128


def chain_paths(k: int) -> list[tuple[float, ...]]:
    """The fixed paths' threshold offsets for a chain of ``k`` tiers (k - 1 thresholds)."""
    if k < 2:
        raise RoutingError(f"a routing chain needs at least 2 predictors, got {k}")
    tied = tuple(0.0 for _ in range(k - 1))
    if k == 2:
        return [tied]
    return [tied] + [tuple(PATH_SHIFT if j == i else 0.0 for j in range(k - 1)) for i in range(k - 1)]


PATH_OFFSETS = chain_paths(3)


def path_sequence(offsets: Sequence[float]) -> np.ndarray:
    """``[T, k-1]`` threshold tuples along one path, most escalation first (escalate-all tuple at row 0)."""
    lam = G.descending_grid()[1:]
    cols = []
    for o in offsets:
        t = np.round(lam + o, 3)
        cols.append(np.where(t > 1.0, G.ALL, t))
    return np.vstack([np.full(len(offsets), G.ALL), np.stack(cols, axis=1)])


@dataclass(frozen=True)
class ChainPoint:
    """One operating point of a chain: ``thresholds[i]`` for each non-final tier, ``tier_shares[j]`` the share
    answered by tier j, ``escalated_share`` the share reaching the last tier."""

    thresholds: tuple[float, ...]
    n: int
    metric: float
    tier_shares: tuple[float, ...]
    escalated_share: float
    latency_mean_ms: float
    latency_p95_ms: float
    cost_per_1k_usd: float
    tier_metrics: tuple[float | None, ...] = ()

    @property
    def threshold(self) -> float:
        """The first tier's threshold (what a two-model report calls *the* threshold)."""
        return self.thresholds[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["thresholds"] = list(self.thresholds)
        d["tier_shares"] = list(self.tier_shares)
        d["tier_metrics"] = list(self.tier_metrics)
        return d


@dataclass
class ChainArrays:
    """Aligned per-row arrays of a chain: ``conf`` [k-1, n] (NaN: no confidence), ``score``/``latency`` [k, n]."""

    conf: np.ndarray
    score: np.ndarray
    latency: np.ndarray
    costs: np.ndarray

    @classmethod
    def from_rows(cls, tiers: Sequence[Sequence[PredictionRow]], costs: Sequence[float]) -> ChainArrays:
        conf = np.array(
            [[np.nan if r.confidence is None else float(r.confidence) for r in rows] for rows in tiers[:-1]]
        )
        score = np.array([[float(r.correct) for r in rows] for rows in tiers])
        lat = np.array([[float(r.latency_ms) for r in rows] for rows in tiers])
        return cls(conf.reshape(len(tiers) - 1, -1), score, lat, np.asarray(costs, dtype=np.float64))

    def answered_by(self, thresholds: Sequence[float]) -> np.ndarray:
        """Index of the tier answering each row: the first tier whose confidence reaches its threshold."""
        k, n = self.score.shape
        who = np.full(n, k - 1)
        for i in range(k - 2, -1, -1):
            keep = self.conf[i] >= thresholds[i]  # NaN compares False: no confidence always moves on
            who[keep] = i
        return who

    def point(self, thresholds: Sequence[float]) -> ChainPoint:
        k, n = self.score.shape
        who = self.answered_by(thresholds)
        cols = np.arange(n)
        score = self.score[who, cols]
        cum_lat = np.cumsum(self.latency, axis=0)[who, cols]
        cum_cost = np.cumsum(self.costs)[who]
        shares = tuple(float(np.mean(who == j)) for j in range(k))
        tier_metrics = tuple(float(score[who == j].mean()) if np.any(who == j) else None for j in range(k))
        return ChainPoint(
            thresholds=tuple(float(t) for t in thresholds),
            n=n,
            metric=float(score.mean()),
            tier_shares=shares,
            escalated_share=shares[-1],
            latency_mean_ms=float(cum_lat.mean()),
            latency_p95_ms=float(np.percentile(cum_lat, 95)),
            cost_per_1k_usd=float(1000.0 * cum_cost.mean()),
            tier_metrics=tier_metrics,
        )

    def answered_matrix(self, seq: np.ndarray) -> np.ndarray:
        """:meth:`answered_by` for every tuple of ``seq`` [T, k-1] at once: a [T, n] tier-index matrix."""
        k, n = self.score.shape
        who = np.full((len(seq), n), k - 1)
        for i in range(k - 2, -1, -1):
            keep = self.conf[i][None, :] >= np.asarray(seq, dtype=np.float64)[:, i][:, None]
            who = np.where(keep, i, who)
        return who

    def sums_and_costs(self, seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Routed score sum and mean cost per request for each tuple of ``seq`` [T, k-1]."""
        n = self.score.shape[1]
        who = self.answered_matrix(seq)
        sums = self.score[who, np.arange(n)[None, :]].sum(axis=1)
        costs = np.cumsum(self.costs)[who].mean(axis=1)
        return sums, costs


def ltt_chain(
    arrays: ChainArrays, target: float, delta: float
) -> tuple[tuple[float, ...], int, float | None, int, str]:
    """Learn-then-Test over the fixed paths (module doc).

    Returns ``(thresholds, n_rejected_total, p_value_of_chosen, n_hypotheses, p_kind)``; the thresholds are
    all :data:`~slmforge.routing.guarantee.ALL` (everything to the last tier) when nothing is rejected.
    """
    G.check_target_delta(target, delta)
    k, n = arrays.score.shape
    if n == 0:
        raise RoutingError("no calibration rows for Learn-then-Test")
    if np.any(arrays.score < 0) or np.any(arrays.score > 1):
        raise RoutingError("per-row scores ('correct') must lie in [0, 1] for the guarantee's p-values")
    binary = G.is_binary(arrays.score)
    paths = chain_paths(k)
    level = delta / len(paths)
    best: tuple[float, float, tuple[float, ...], float] | None = None  # (cost, -metric, tuple, p)
    rejected = hypotheses = 0
    for offsets in paths:
        seq = path_sequence(offsets)
        hypotheses += len(seq)
        # Tested in chunks along the sequence: testing stops at the first non-rejection, so the rest of the
        # path need not be computed.
        for start in range(0, len(seq), _CHUNK):
            chunk = seq[start : start + _CHUNK]
            sums, costs = arrays.sums_and_costs(chunk)
            p = G.pvalues(sums, n, target, binary)
            r = G.fixed_sequence(p, level)
            rejected += r
            for j in range(r):
                cand = (float(costs[j]), -float(sums[j]) / n, tuple(float(x) for x in chunk[j]), float(p[j]))
                if best is None or cand[:2] < best[:2]:
                    best = cand
            if r < len(chunk):
                break
    kind = "binomial" if binary else "hoeffding_bentkus"
    if best is None:
        return tuple(G.ALL for _ in range(k - 1)), 0, None, hypotheses, kind
    return best[2], rejected, best[3], hypotheses, kind


def sweep_chain(arrays: ChainArrays) -> list[ChainPoint]:
    """The distinct operating points along every fixed path (the curve for reports and point-estimate choice)."""
    k = arrays.score.shape[0]
    seen: dict[bytes, ChainPoint] = {}
    for offsets in chain_paths(k):
        seq = path_sequence(offsets)
        for t, who in zip(seq, arrays.answered_matrix(seq), strict=True):
            key = who.tobytes()  # the routing decision itself: keep the first tuple giving it
            if key not in seen:
                seen[key] = arrays.point(t)
    return sorted(seen.values(), key=lambda p: (p.escalated_share, p.cost_per_1k_usd))


def choose_point(
    points: Sequence[ChainPoint], target: float | None, budget: float | None, metric_name: str
) -> ChainPoint:
    """Point-estimate choice (no guarantee), same rules as :func:`~slmforge.routing.threshold.choose_threshold`."""
    ok = list(points)
    if target is not None:
        ok = [p for p in ok if p.metric >= target - _TOL]
        if not ok:
            best = max(points, key=lambda p: p.metric)
            raise RoutingError(
                f"no threshold tuple reaches {metric_name} >= {target:.4f}: the best is {best.metric:.4f}; "
                "lower routing.target"
            )
    if budget is not None:
        ok = [p for p in ok if p.cost_per_1k_usd <= budget + _TOL]
        if not ok:
            raise RoutingError(
                f"no threshold tuple fits routing.budget_per_1k={budget:.4f}: the lowest cost is "
                f"${min(p.cost_per_1k_usd for p in points):.4f} per 1k requests; raise the budget"
            )
    if target is not None:
        return min(ok, key=lambda p: (p.cost_per_1k_usd, p.escalated_share))
    return max(ok, key=lambda p: (p.metric, -p.cost_per_1k_usd))


@dataclass
class ChainResult:
    """A routed chain measured on the evaluated split; ``chosen`` was chosen on ``selected_on``."""

    names: list[str]
    dirs: list[str]
    task: str
    split: str
    metric_name: str
    n: int
    costs_per_request: list[float]
    temperatures: list[float]
    points: list[ChainPoint]
    chosen: ChainPoint
    singles: list[dict[str, Any]]
    selected_on: str
    guarantee: G.Guarantee
    field: dict[str, Any]
    policy: RoutingPolicy
    description: str
    target: float | None = None
    budget_per_1k: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "chain",
            "names": self.names,
            "dirs": self.dirs,
            "task": self.task,
            "split": self.split,
            "metric_name": self.metric_name,
            "n": self.n,
            "costs_per_request": self.costs_per_request,
            "temperatures": self.temperatures,
            "target": self.target,
            "budget_per_1k": self.budget_per_1k,
            "selected_on": self.selected_on,
            "description": self.description,
            "guarantee": self.guarantee.to_dict(),
            "field_metrics": self.field,
            "chosen": self.chosen.to_dict(),
            "tiers": [
                {
                    "name": name,
                    "threshold": self.chosen.thresholds[i] if i < len(self.names) - 1 else None,
                    "share": self.chosen.tier_shares[i],
                    "metric": self.chosen.tier_metrics[i],
                    "alone": self.singles[i],
                }
                for i, name in enumerate(self.names)
            ],
            "points": [p.to_dict() for p in self.points],
            "policy": self.policy.to_dict(),
            "warnings": list(self.warnings),
        }


def _names(dirs: Sequence[Path], names: Sequence[str]) -> list[str]:
    out = list(names)
    for i, nm in enumerate(out):
        if out.count(nm) > 1:
            out[i] = f"{nm} ({dirs[i].parent.parent.name or i})"
    for i, nm in enumerate(out):
        if out.count(nm) > 1:
            out[i] = f"{nm} #{i}"
    return out


def evaluate_chain(
    dirs: Sequence[str | Path],
    costs: Sequence[float],
    target: float | None = None,
    budget: float | None = None,
    delta: float = 0.1,
    guarantee: Literal["ltt", "none"] | None = None,
    calibrate: bool = True,
    select_on: Literal["auto", "validation", "split"] = "auto",
    metric_name: str | None = None,
) -> ChainResult:
    """Route along ``dirs`` (cheapest first, >= 2 predictor dirs) and choose every tier's threshold.

    ``guarantee`` defaults to ``ltt`` when a target is set (else ``none``). Thresholds are chosen on the
    validation predictions when every tier has them; ``select_on='split'`` chooses on the evaluated split
    itself, which voids the guarantee (said in the result's statement and warnings).
    """
    paths = [Path(d).expanduser() for d in dirs]
    if len(paths) < 2:
        raise RoutingError(f"chain needs at least 2 predictor dirs (cheapest first), got {len(paths)}")
    if len(costs) != len(paths):
        raise RoutingError(f"chain has {len(paths)} predictor dirs but {len(costs)} costs")
    method = G.resolve_options(guarantee, target, delta, select_on)
    recs = [read_results(p) for p in paths]
    for p, r in zip(paths[1:], recs[1:], strict=True):
        if r.task != recs[0].task or r.split != recs[0].split:
            raise RoutingError(
                f"{p} is task {r.task!r} on split {r.split!r} but {paths[0]} is {recs[0].task!r} on "
                f"{recs[0].split!r}; a chain routes predictors of one task evaluated on the same split"
            )
    names = _names(paths, [r.name for r in recs])
    rows = [read_predictions(p) for p in paths]
    rows = [rows[0]] + [
        align_rows(rows[0], r, str(paths[0]), str(p))[1] for r, p in zip(rows[1:], paths[1:], strict=True)
    ]
    vals: list[list[PredictionRow] | None] = [
        read_predictions(p / VALIDATION_PREDICTIONS_FILE)
        if (p / VALIDATION_PREDICTIONS_FILE).exists()
        else None
        for p in paths
    ]
    metric = metric_name or (
        "accuracy" if all(r.correct in (0, 1) and isinstance(r.gold, str) for r in rows[0]) else "score"
    )
    warnings: list[str] = []

    temps = [1.0] * len(paths)
    fitted_on_validation = False
    if calibrate:
        for i in range(len(paths) - 1):
            if not all(r.label_probs for r in rows[i]):
                warnings.append(f"{names[i]}: no label_probs, so its raw confidences are thresholded")
                continue
            v = vals[i]
            if v is not None and all(r.label_probs for r in v):
                temps[i] = fit_temperature_rows(v, where=str(paths[i] / VALIDATION_PREDICTIONS_FILE))
                fitted_on_validation = True
            else:
                warnings.append(
                    f"{names[i]}: temperature fitted on the evaluated split (no validation label_probs)"
                )
                temps[i] = fit_temperature_rows(rows[i], where=str(paths[i] / PREDICTIONS_FILE))
            rows[i] = recalibrate_rows(rows[i], temps[i], where=str(paths[i] / PREDICTIONS_FILE))

    use_val = all(v is not None for v in vals) and select_on != "split"
    if select_on == "validation" and not use_val:
        missing = [str(p) for p, v in zip(paths, vals, strict=True) if v is None]
        raise RoutingError(
            f"routing.select_on=validation needs {VALIDATION_PREDICTIONS_FILE} in every chain dir; missing in "
            f"{missing}; evaluate them on validation too or use routing.select_on=auto"
        )
    if use_val:
        cal = [v for v in vals if v is not None]
        cal = [cal[0]] + [align_rows(cal[0], r, "validation", "validation")[1] for r in cal[1:]]
        for i in range(len(paths) - 1):
            if temps[i] != 1.0:
                cal[i] = recalibrate_rows(cal[i], temps[i], where=str(paths[i] / VALIDATION_PREDICTIONS_FILE))
        selected_on = "validation"
    else:
        cal = rows
        selected_on = recs[0].split
        warnings.append(
            f"thresholds chosen and measured on the same split ({selected_on}); its {metric} is optimistic"
            + (" and the guarantee is VOID" if method == "ltt" else "")
        )
    cal_arrays = ChainArrays.from_rows(cal, costs)
    test_arrays = ChainArrays.from_rows(rows, costs)

    valid = method == "ltt" and use_val
    n_cal = cal_arrays.score.shape[1]
    g = G.Guarantee(
        method=method, target=target, delta=float(delta), n_calibration=n_cal, calibrated_on=selected_on
    )
    if method == "ltt":
        assert target is not None
        thresholds, rejected, pv, n_hyp, kind = ltt_chain(cal_arrays, target, delta)
        g.p_values, g.valid, g.n_hypotheses, g.n_rejected, g.p_value = kind, valid, n_hyp, rejected, pv
        g.paths = len(chain_paths(len(paths)))
        g.fallback_all = rejected == 0
        if g.fallback_all:
            warnings.append(
                f"no threshold tuple certified {metric} >= {target:.4f} at delta={delta:g} with {n_cal} "
                f"calibration rows: everything escalated to {names[-1]} (lower the target, raise delta, or "
                "add validation rows)"
            )
        chosen_cal = cal_arrays.point(thresholds)
        if budget is not None and chosen_cal.cost_per_1k_usd > budget + _TOL:
            raise RoutingError(
                f"the cheapest certified threshold tuple costs ${chosen_cal.cost_per_1k_usd:.4f} per 1k requests "
                f"on {selected_on}, above routing.budget_per_1k={budget:.4f}; raise the budget or lower the target"
            )
    else:
        thresholds = choose_point(sweep_chain(cal_arrays), target, budget, metric).thresholds
        g.p_values = "none"
    g.statement = G.statement(
        method, metric, target, delta, n_cal, g.p_values, selected_on, valid, g.paths, g.fallback_all
    )
    if method == "ltt" and not valid:
        warnings.append(g.statement)
    chosen = test_arrays.point(thresholds)
    points = sweep_chain(test_arrays)
    singles = [
        single_predictor_point(r, c, "expensive_only" if i == len(rows) - 1 else "cheap_only").to_dict()
        for i, (r, c) in enumerate(zip(rows, costs, strict=True))
    ]
    tied = [p for p in points if len(set(p.thresholds)) == 1]
    fm = G.field_metrics(
        [(p.escalated_share, p.metric) for p in tied], singles[0]["metric"], singles[-1]["metric"]
    )
    fm["curve"] = "tied thresholds; escalation share = share reaching the last tier"
    if valid:
        g.assumptions.append(G.EXPECTATION_NOTE)
        if fitted_on_validation:
            g.assumptions.append(
                "the tiers' temperatures were fitted on the same validation rows the guarantee is computed on; "
                "the guarantee treats them as fixed (routing.calibrate=false makes it exact)"
            )
    g.observed(chosen.metric, recs[0].split, chosen.n, metric, G.is_binary(test_arrays.score))
    if target is not None and not chosen.metric >= target - _TOL:
        warnings.append(
            f"observed {metric} {chosen.metric:.4f} on {recs[0].split} is below the target {target:.4f}"
            + (" (a finite test sample can fall below a guaranteed expectation)" if valid else "")
        )
    shares = ", ".join(f"{100 * s:.0f}% {nm}" for nm, s in zip(names, chosen.tier_shares, strict=True))
    ts = ", ".join(f"{nm} {min(t, 1.0):.3f}" for nm, t in zip(names, chosen.thresholds, strict=False))
    description = (
        f"chain {' → '.join(names)} at thresholds ({ts}): {shares}; {metric} {chosen.metric:.3f}, "
        f"${chosen.cost_per_1k_usd:.4f} per 1k requests"
    )
    policy = RoutingPolicy(
        cheap_name=names[0],
        expensive_name=names[-1],
        threshold=float(chosen.thresholds[0]),
        temperature=float(temps[0]),
        metric_name=metric,
        expected_metric=chosen.metric,
        expected_cost_per_1k_usd=chosen.cost_per_1k_usd,
        expected_escalated_share=chosen.escalated_share,
        measured_on=recs[0].split,
        chain=[
            {
                "name": nm,
                "threshold": float(chosen.thresholds[i]) if i < len(names) - 1 else None,
                "temperature": temps[i],
            }
            for i, nm in enumerate(names)
        ],
        guarantee=g.policy_fields(),
    )
    return ChainResult(
        names=names,
        dirs=[str(p) for p in paths],
        task=recs[0].task,
        split=recs[0].split,
        metric_name=metric,
        n=chosen.n,
        costs_per_request=[float(c) for c in costs],
        temperatures=temps,
        points=points,
        chosen=chosen,
        singles=singles,
        selected_on=selected_on,
        guarantee=g,
        field=fm,
        policy=policy,
        description=description,
        target=target,
        budget_per_1k=budget,
        warnings=warnings,
    )
