"""Hybrid SLM → LLM routing, measured from two evaluated run directories.

The cheap (small, fine-tuned) predictor answers every request first; when its calibrated confidence is
below a threshold, or a tier rule says the input is out of its depth, the expensive predictor answers
instead. Everything is computed from ``results.json`` + ``predictions.jsonl`` (see
:mod:`slmforge.records`), so any two predictors evaluated on the same split can be combined.

Entry point: :func:`evaluate_routing` (in :mod:`~slmforge.routing.evaluation`) reads two run directories and returns a :class:`RoutingResult`
with the whole threshold curve, the chosen point, a serialisable :class:`RoutingPolicy`, calibration
before/after and a one-line description. The building blocks live in the submodules:

- :mod:`~slmforge.routing.calibration` temperature scaling, ECE/Brier/NLL;
- :mod:`~slmforge.routing.threshold`   threshold sweep, choice, description;
- :mod:`~slmforge.routing.guarantee`   Learn-then-Test thresholds with a finite-sample guarantee, APGR/CPT;
- :mod:`~slmforge.routing.chain`       a chain of >= 3 predictors, one threshold per tier;
- :mod:`~slmforge.routing.tiers`       rules that send inputs straight to the expensive predictor;
- :mod:`~slmforge.routing.ensemble`    voting ensembles for comparison;
- :mod:`~slmforge.routing.policy`      the JSON policy a serving process applies;
- :mod:`~slmforge.routing.plots`       routing curve and reliability diagram (imported lazily).
"""

from typing import Any

from slmforge.records import VALIDATION_PREDICTIONS_FILE
from slmforge.routing.calibration import (
    apply_temperature,
    calibration_report,
    calibration_report_rows,
    fit_temperature,
    fit_temperature_rows,
    recalibrate_rows,
    rows_to_arrays,
)
from slmforge.routing.chain import ChainPoint, ChainResult, evaluate_chain
from slmforge.routing.ensemble import EnsembleResult, vote
from slmforge.routing.errors import RoutingError
from slmforge.routing.evaluation import RoutingResult, distinct_names, evaluate_routing
from slmforge.routing.guarantee import Guarantee, field_metrics, ltt_two_tier
from slmforge.routing.policy import RoutingPolicy
from slmforge.routing.threshold import (
    RoutingPoint,
    align_rows,
    choose_threshold,
    describe,
    evaluate_threshold,
    single_predictor_point,
    sweep_thresholds,
)
from slmforge.routing.tiers import TierRule, apply_tiers, parse_rules, sweep_tiers

__all__ = [
    "VALIDATION_PREDICTIONS_FILE",
    "ChainPoint",
    "ChainResult",
    "EnsembleResult",
    "Guarantee",
    "RoutingError",
    "RoutingPoint",
    "RoutingPolicy",
    "RoutingResult",
    "TierRule",
    "align_rows",
    "apply_temperature",
    "apply_tiers",
    "calibration_report",
    "calibration_report_rows",
    "choose_threshold",
    "describe",
    "distinct_names",
    "evaluate_chain",
    "evaluate_routing",
    "evaluate_threshold",
    "field_metrics",
    "fit_temperature",
    "fit_temperature_rows",
    "ltt_two_tier",
    "parse_rules",
    "plot_reliability",
    "plot_routing_curve",
    "recalibrate_rows",
    "rows_to_arrays",
    "single_predictor_point",
    "sweep_thresholds",
    "sweep_tiers",
    "vote",
]


def __getattr__(name: str) -> Any:
    # matplotlib is only imported when a plot is asked for.
    if name in ("plot_routing_curve", "plot_reliability"):
        from slmforge.routing import plots

        return getattr(plots, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
