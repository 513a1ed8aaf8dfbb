"""Measure a confidence-routed cheap → expensive hybrid from two evaluated predictors' records.

:func:`evaluate_routing` reads two run directories (``results.json`` + ``predictions.jsonl``, and their
validation predictions when present) and returns a :class:`RoutingResult`: the threshold curve, the chosen
point, the :class:`RoutingPolicy` to save, calibration before/after and a one-line description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slmforge.records import (
    PREDICTIONS_FILE,
    VALIDATION_PREDICTIONS_FILE,
    PredictionRow,
    ResultsRecord,
    read_predictions,
    read_results,
)
from slmforge.routing import guarantee as G
from slmforge.routing.calibration import (
    calibration_report_rows,
    fit_temperature_rows,
    recalibrate_rows,
)
from slmforge.routing.errors import RoutingError
from slmforge.routing.policy import RoutingPolicy
from slmforge.routing.threshold import (
    RoutingPoint,
    _arrays,
    align_rows,
    choose_threshold,
    describe,
    single_predictor_point,
)
from slmforge.routing.tiers import TierRule, apply_tiers, parse_rules, sweep_tiers, tier_masks


@dataclass
class RoutingResult:
    """Everything a routing report needs.

    ``points`` is the sweep on the evaluated split, ``chosen`` the chosen threshold measured there.
    ``selected_on`` says where the threshold was chosen: ``"validation"`` (both runs have validation
    predictions; then ``selection_points`` is that sweep and ``chosen`` may miss the target on the
    evaluated split) or the split name (chosen and measured on the same examples: optimistic).
    ``calibration_fit_on`` is where the temperature was fitted (None: not calibrated);
    ``calibration_before``/``after`` are :func:`calibration_report` dicts on the evaluated split.
    ``warnings`` lists every caveat a report should print. ``guarantee`` says how the threshold was
    chosen and what is guaranteed (:class:`~slmforge.routing.guarantee.Guarantee`); ``field_metrics``
    holds APGR and CPT on the evaluated split (:func:`~slmforge.routing.guarantee.field_metrics`).
    """

    cheap_name: str
    expensive_name: str
    task: str
    split: str
    metric_name: str
    n: int
    cost_cheap_per_request: float
    cost_exp_per_request: float
    points: list[RoutingPoint]
    chosen: RoutingPoint
    cheap_only: RoutingPoint
    expensive_only: RoutingPoint
    policy: RoutingPolicy
    description: str
    temperature: float = 1.0
    calibration_before: dict[str, Any] | None = None
    calibration_after: dict[str, Any] | None = None
    calibration_fit_on: str | None = None
    selected_on: str = ""
    selection_points: list[RoutingPoint] | None = None
    target: float | None = None
    budget_per_1k: float | None = None
    tiers: list[TierRule] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    guarantee: G.Guarantee | None = None
    field_metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (no NaN: empty calibration bins hold None)."""
        return {
            "cheap_name": self.cheap_name,
            "expensive_name": self.expensive_name,
            "task": self.task,
            "split": self.split,
            "metric_name": self.metric_name,
            "n": self.n,
            "cost_cheap_per_request": self.cost_cheap_per_request,
            "cost_exp_per_request": self.cost_exp_per_request,
            "target": self.target,
            "budget_per_1k": self.budget_per_1k,
            "tiers": [r.to_dict() for r in self.tiers],
            "temperature": self.temperature,
            "calibration_fit_on": self.calibration_fit_on,
            "calibration_before": self.calibration_before,
            "calibration_after": self.calibration_after,
            "selected_on": self.selected_on,
            "description": self.description,
            "chosen": self.chosen.to_dict(),
            "cheap_only": self.cheap_only.to_dict(),
            "expensive_only": self.expensive_only.to_dict(),
            "points": [p.to_dict() for p in self.points],
            "selection_points": None
            if self.selection_points is None
            else [p.to_dict() for p in self.selection_points],
            "policy": self.policy.to_dict(),
            "guarantee": None if self.guarantee is None else self.guarantee.to_dict(),
            "field_metrics": self.field_metrics,
            "warnings": list(self.warnings),
        }


def _cost_per_request(record: ResultsRecord, given: float | None, run_dir: Path, arg: str) -> float:
    if given is not None:
        return float(given)
    raise RoutingError(
        f"{run_dir}: no cost per request for '{record.name}'; pass {arg} (USD per request), or run "
        f"slmforge-route, which prices both predictors with conf/pricing"
    )


def _metric_name(rows: Sequence[PredictionRow]) -> str:
    binary = all(r.correct in (0, 1) for r in rows)
    return "accuracy" if binary and all(isinstance(r.gold, str) for r in rows) else "score"


def _read_validation(run_dir: Path) -> list[PredictionRow] | None:
    path = run_dir / VALIDATION_PREDICTIONS_FILE
    return read_predictions(path) if path.exists() else None


def distinct_names(cheap: str, expensive: str, cheap_dir: Path, expensive_dir: Path) -> tuple[str, str]:
    """The two predictors' names, told apart by their run directories when they are equal (the same model
    fine-tuned twice), else by role."""
    if cheap != expensive:
        return cheap, expensive
    run_c, run_e = cheap_dir.parent.parent.name, expensive_dir.parent.parent.name
    if run_c and run_e and run_c != run_e:
        return f"{cheap} ({run_c})", f"{expensive} ({run_e})"
    return f"{cheap} (cheap)", f"{expensive} (expensive)"


def evaluate_routing(
    cheap_dir: str | Path,
    expensive_dir: str | Path,
    cost_cheap: float | None = None,
    cost_exp: float | None = None,
    target: float | None = None,
    budget: float | None = None,
    calibrate: bool = True,
    tiers: Sequence[TierRule | Mapping[str, Any]] = (),
    metric_name: str | None = None,
    select_on: Literal["auto", "validation", "split"] = "auto",
    n_bins: int = 15,
    guarantee: Literal["ltt", "none"] | None = None,
    delta: float = 0.1,
) -> RoutingResult:
    """Measure cheap → expensive routing between two evaluated runs and choose a threshold.

    ``cost_cheap``/``cost_exp`` are USD per request (default: each run's ``cost.per_1k_requests_usd``
    / 1000). ``target`` is the metric to reach at the lowest cost; ``budget`` a cap in USD per 1k
    requests (see :func:`choose_threshold`). With ``calibrate`` the cheap run's confidences are
    temperature-scaled first, the temperature fitted on its ``predictions_validation.jsonl`` when
    present (else on the evaluated split, with a warning). ``select_on="auto"`` chooses the threshold
    on validation when both runs have validation predictions, else on the evaluated split (warning).

    ``guarantee`` (default ``ltt`` when a target is set, else ``none``): ``ltt`` chooses the threshold by
    Learn-then-Test on the selection rows so that, with probability >= 1 - ``delta``, the routed quality
    on new data is >= target (:mod:`~slmforge.routing.guarantee`); ``none`` is the point-estimate choice.
    """
    method = G.resolve_options(guarantee, target, delta, select_on)
    cheap_dir, expensive_dir = Path(cheap_dir), Path(expensive_dir)
    rec_c, rec_e = read_results(cheap_dir), read_results(expensive_dir)
    rows_c, rows_e = read_predictions(cheap_dir), read_predictions(expensive_dir)
    if rec_c.task != rec_e.task:
        raise RoutingError(
            f"{cheap_dir} is task {rec_c.task!r} but {expensive_dir} is task {rec_e.task!r}; route between "
            "two predictors of the same task"
        )
    if rec_c.split != rec_e.split:
        raise RoutingError(
            f"{cheap_dir} was evaluated on split {rec_c.split!r} but {expensive_dir} on {rec_e.split!r}; "
            "both predictors must be evaluated on the same split"
        )
    cheap_name, exp_name = distinct_names(rec_c.name, rec_e.name, cheap_dir, expensive_dir)
    c_cost = _cost_per_request(rec_c, cost_cheap, cheap_dir, "cost_cheap")
    e_cost = _cost_per_request(rec_e, cost_exp, expensive_dir, "cost_exp")
    rows_c, rows_e = align_rows(rows_c, rows_e, str(cheap_dir), str(expensive_dir))
    rules = parse_rules(tiers)
    metric = metric_name or _metric_name(rows_c)
    warnings: list[str] = []

    val_c = _read_validation(cheap_dir)
    val_e = _read_validation(expensive_dir)

    # -- calibration: fit T on held-out predictions, report before/after on the evaluated split -------
    temperature, fit_on = 1.0, None
    before = after = None
    has_probs = all(r.label_probs for r in rows_c)
    split_where = str(cheap_dir / PREDICTIONS_FILE)
    if has_probs:
        before = calibration_report_rows(rows_c, 1.0, n_bins, where=split_where)
    if calibrate and not has_probs:
        warnings.append(
            f"not calibrated: {cheap_name}'s predictions carry no label_probs (needed for temperature "
            "scaling); thresholds apply to its raw confidences"
        )
    elif calibrate:
        val_where = str(cheap_dir / VALIDATION_PREDICTIONS_FILE)
        if val_c is not None and all(r.label_probs for r in val_c):
            temperature, fit_on = fit_temperature_rows(val_c, where=val_where), "validation"
        else:
            why = "has no label_probs" if val_c is not None else "does not exist"
            warnings.append(
                f"temperature fitted on the evaluated split ({rec_c.split}) because {val_where} {why}; "
                "its calibration numbers are optimistic"
            )
            temperature, fit_on = fit_temperature_rows(rows_c, where=split_where), rec_c.split
        after = calibration_report_rows(rows_c, temperature, n_bins, where=split_where)
        rows_c = recalibrate_rows(rows_c, temperature, where=split_where)

    # -- sweep on the evaluated split, references -------------------------------------------------------
    points = sweep_tiers(rows_c, rows_e, rules, c_cost, e_cost, str(cheap_dir), str(expensive_dir))
    cheap_only = single_predictor_point(rows_c, c_cost, "cheap_only")
    exp_only = single_predictor_point(rows_e, e_cost, "expensive_only")

    # -- choose: on validation when both runs have it, so the reported point is not tuned on test ----
    use_val = val_c is not None and val_e is not None
    if select_on == "validation" and not use_val:
        raise RoutingError(
            f"select_on='validation' needs {VALIDATION_PREDICTIONS_FILE} in both {cheap_dir} and "
            f"{expensive_dir}; evaluate both predictors on the validation split too, or use select_on='auto'"
        )
    selection_points = None
    sel_c, sel_e = rows_c, rows_e
    selected_on = rec_c.split
    if use_val and select_on != "split":
        assert val_c is not None and val_e is not None
        if temperature != 1.0:
            val_c = recalibrate_rows(val_c, temperature, where=str(cheap_dir / VALIDATION_PREDICTIONS_FILE))
        sel_c, sel_e = align_rows(
            val_c,
            val_e,
            str(cheap_dir / VALIDATION_PREDICTIONS_FILE),
            str(expensive_dir / VALIDATION_PREDICTIONS_FILE),
        )
        selection_points = sweep_tiers(
            sel_c,
            sel_e,
            rules,
            c_cost,
            e_cost,
            str(cheap_dir / VALIDATION_PREDICTIONS_FILE),
            str(expensive_dir / VALIDATION_PREDICTIONS_FILE),
        )
        selected_on = "validation"
    else:
        warnings.append(
            f"threshold chosen and measured on the same split ({rec_c.split}); its {metric} is optimistic"
            + (" and the guarantee is VOID" if method == "ltt" else "")
            + f". Write {VALIDATION_PREDICTIONS_FILE} for both runs to choose on validation"
        )
    valid = method == "ltt" and selected_on == "validation"
    g = G.Guarantee(
        method=method, target=target, delta=float(delta), n_calibration=len(sel_c), calibrated_on=selected_on
    )
    if valid:
        g.assumptions.append(G.EXPECTATION_NOTE)
    if method == "ltt" and fit_on is not None and fit_on == selected_on:
        g.assumptions.append(
            f"the temperature was fitted on the same {selected_on} rows the guarantee is computed on; the "
            "guarantee treats that one scalar as fixed (routing.calibrate=false makes it exact)"
        )
    if method == "ltt":
        assert target is not None
        a = _arrays(sel_c, sel_e)
        pre, post = tier_masks(sel_c, sel_e, rules) if rules else (None, None)
        forced = None if pre is None else pre | post
        threshold, rejected, pv, ps, kind = G.ltt_two_tier(
            a["conf"], a["c_ok"], a["e_ok"], target, delta, forced
        )
        g.p_values, g.valid, g.n_hypotheses, g.n_rejected, g.p_value = kind, valid, len(ps), rejected, pv
        g.fallback_all = rejected == 0
        if g.fallback_all:
            warnings.append(
                f"no threshold certified {metric} >= {target:.4f} at delta={delta:g} with {len(sel_c)} "
                f"calibration rows (p={ps[0]:.3g} even when escalating everything): everything escalated to "
                f"{exp_name}; lower routing.target, raise routing.delta or add validation rows"
            )
        cal_point = apply_tiers(sel_c, sel_e, rules, threshold, c_cost, e_cost)
        if budget is not None and cal_point.cost_per_1k_usd > budget + 1e-9:
            raise RoutingError(
                f"the cheapest certified threshold costs ${cal_point.cost_per_1k_usd:.4f} per 1k requests on "
                f"{selected_on}, above routing.budget_per_1k={budget:.4f}; raise the budget or lower the target"
            )
        chosen = apply_tiers(rows_c, rows_e, rules, threshold, c_cost, e_cost)
    else:
        g.p_values = "none"
        picked = choose_threshold(selection_points or points, target, budget, metric)
        assert picked.threshold is not None
        chosen = (
            picked
            if selection_points is None
            else apply_tiers(rows_c, rows_e, rules, picked.threshold, c_cost, e_cost)
        )
    g.statement = G.statement(
        method, metric, target, delta, len(sel_c), g.p_values, selected_on, valid, 1, g.fallback_all
    )
    if method == "ltt" and not valid:
        warnings.append(g.statement)
    binary = all(r.correct in (0, 1) for r in [*rows_c, *rows_e])
    g.observed(chosen.metric, rec_c.split, len(rows_c), metric, binary)
    if selected_on == "validation" and target is not None and chosen.metric < target - 1e-9:
        warnings.append(
            f"the threshold chosen on validation gives {metric} {chosen.metric:.4f} on {rec_c.split}, below "
            f"the target {target:.4f}"
            + (" (a finite test sample can fall below a guaranteed expectation)" if valid else "")
        )
    if selected_on == "validation" and budget is not None and chosen.cost_per_1k_usd > budget + 1e-9:
        warnings.append(
            f"the threshold chosen on validation costs ${chosen.cost_per_1k_usd:.4f} per 1k on "
            f"{rec_c.split}, above the budget ${budget:.4f}"
        )
    field_metrics = G.field_metrics(
        [(p.escalated_share, p.metric) for p in points], cheap_only.metric, exp_only.metric
    )

    assert chosen.threshold is not None
    policy = RoutingPolicy(
        cheap_name=cheap_name,
        expensive_name=exp_name,
        threshold=chosen.threshold,
        temperature=temperature,
        tiers=rules,
        metric_name=metric,
        expected_metric=chosen.metric,
        expected_cost_per_1k_usd=chosen.cost_per_1k_usd,
        expected_escalated_share=chosen.escalated_share,
        measured_on=rec_c.split,
        guarantee=g.policy_fields(),
    )
    text = describe(chosen, cheap_name, exp_name, exp_only.metric, exp_only.cost_per_1k_usd, metric)
    return RoutingResult(
        cheap_name=cheap_name,
        expensive_name=exp_name,
        task=rec_c.task,
        split=rec_c.split,
        metric_name=metric,
        n=len(rows_c),
        cost_cheap_per_request=c_cost,
        cost_exp_per_request=e_cost,
        points=points,
        chosen=chosen,
        cheap_only=cheap_only,
        expensive_only=exp_only,
        policy=policy,
        description=text,
        temperature=temperature,
        calibration_before=before,
        calibration_after=after,
        calibration_fit_on=fit_on,
        selected_on=selected_on,
        selection_points=selection_points,
        target=target,
        budget_per_1k=budget,
        tiers=rules,
        warnings=warnings,
        guarantee=g,
        field_metrics=field_metrics,
    )
