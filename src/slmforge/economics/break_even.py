"""Break-even volume: the monthly request count above which a fine-tuned local model costs less than an API.

For a fine-tuned predictor F (local, ``method == "finetuned"``) and an API predictor A of equal or better
quality, at ``V`` requests a month::

    cost_F(V) = training_usd / amortise_months + max(floor_usd, V * c_F)
    cost_A(V) = V * c_A

``c_F`` and ``c_A`` are :func:`~slmforge.economics.cost.cost_summary`'s per-request costs (self-hosted:
machine price over measured throughput and utilisation; API: mean tokens x list price), ``training_usd`` is
:func:`~slmforge.economics.cost.record_training_cost`, and ``floor_usd`` is one serving machine paid around
the clock (``hourly_usd x 730``) when the pricing table says ``always_on: true``, else 0 (pay per used
machine-hour, what every per-request cost in the report assumes).

``cost_A - cost_F = min(V c_A - T - floor, V (c_A - c_F) - T)`` with ``T`` the amortised training cost, so
F is cheaper exactly when ``V > max((T + floor) / c_A, T / (c_A - c_F))``: that maximum is the break-even
volume ``V*``. When ``c_F >= c_A`` the difference never turns positive and there is no break-even
(``volume is None``, with the reason).

Quality: F is eligible when its primary metric is at least A's (in the metric's direction) on the *point
estimates*; a tie counts as "equal". Whether F is "not significantly worse" is out of scope here: with a
100-row test split an interval would call most pairs equal, so the report states the point estimates and
leaves the paired test to the comparison section.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slmforge.economics.cost import cost_summary, record_training_cost
from slmforge.economics.pricing import HOURS_PER_MONTH, Pricing, PricingError, load_pricing
from slmforge.records import ResultsRecord

FINETUNED_METHOD = "finetuned"


@dataclass(frozen=True)
class BreakEven:
    """One fine-tuned vs API pair: their quality, the cost parameters, and the break-even volume or why not.

    ``volume`` is requests per month above which the fine-tuned model is strictly cheaper (``0.0``: at any
    volume); ``None`` when there is none, ``reason`` saying why (worse quality, never cheaper per request,
    unpriceable record). Costs are NaN when they could not be computed.
    """

    finetuned: str
    api: str
    metric: str
    quality_finetuned: float
    quality_api: float
    eligible: bool
    training_usd: float
    amortise_months: float
    floor_monthly_usd: float
    finetuned_per_request_usd: float
    api_per_request_usd: float
    volume: float | None
    reason: str

    @property
    def fixed_monthly_usd(self) -> float:
        """Training cost per month of amortisation (the fine-tuned side's fixed cost)."""
        return self.training_usd / self.amortise_months

    def monthly_finetuned_usd(self, volume: float) -> float:
        """What the fine-tuned model costs in a month of ``volume`` requests (training amortised in)."""
        return self.fixed_monthly_usd + max(self.floor_monthly_usd, volume * self.finetuned_per_request_usd)

    def monthly_api_usd(self, volume: float) -> float:
        """What the API costs in a month of ``volume`` requests."""
        return volume * self.api_per_request_usd


def break_even_volume(
    fixed_monthly_usd: float,
    finetuned_per_request_usd: float,
    api_per_request_usd: float,
    floor_monthly_usd: float = 0.0,
) -> float | None:
    """Monthly requests above which ``fixed + max(floor, V * c_F) < V * c_A``; ``None`` if never.

    ``0.0`` when the fine-tuned side is cheaper from the first request (no fixed cost and no floor).
    """
    values = (fixed_monthly_usd, finetuned_per_request_usd, api_per_request_usd, floor_monthly_usd)
    if any(math.isnan(x) or x < 0 for x in values):
        raise ValueError(f"costs must be >= 0 and not NaN, got {values}")
    if finetuned_per_request_usd >= api_per_request_usd:
        return None
    return max(
        (fixed_monthly_usd + floor_monthly_usd) / api_per_request_usd,
        fixed_monthly_usd / (api_per_request_usd - finetuned_per_request_usd),
    )


def is_finetuned(record: ResultsRecord) -> bool:
    """A local predictor whose weights were fine-tuned (the side that pays a training run)."""
    return record.predictor.get("kind") != "api" and record.predictor.get("method") == FINETUNED_METHOD


def is_api(record: ResultsRecord) -> bool:
    return record.predictor.get("kind") == "api"


def _not_comparable(f: ResultsRecord, a: ResultsRecord) -> str | None:
    """Why two records' qualities cannot be compared, or None. A different task, metric, dataset or test-split
    size means the two numbers measure different things."""
    if f.task != a.task:
        return f"different tasks ({f.task} vs {a.task})"
    if f.primary_metric != a.primary_metric:
        return f"different primary metrics ({f.primary_metric} vs {a.primary_metric})"
    fd, ad = f.data.get("name"), a.data.get("name")
    if fd and ad and fd != ad:
        return f"evaluated on different data ({fd} vs {ad})"
    ft = (f.data.get("sizes") or {}).get(f.split)
    at = (a.data.get("sizes") or {}).get(a.split)
    if (ft is not None and at is not None and ft != at) or f.split != a.split:
        return f"evaluated on different test splits ({f.split}: {ft} rows vs {a.split}: {at} rows)"
    if f.primary_value is None or a.primary_value is None:
        return f"no numeric {f.primary_metric} in one of the records"
    return None


def break_even(
    finetuned: ResultsRecord,
    api: ResultsRecord,
    pricing: Pricing | Mapping[str, Any] | None = None,
    machine: str = "cpu-2core",
    training_machine: str | None = None,
) -> BreakEven:
    """The break-even of one fine-tuned record against one API record (see the module docstring).

    ``machine`` serves the fine-tuned model (a record's ``tags.machine`` overrides it), ``training_machine``
    (default: ``machine``) prices the training run (``training.machine`` overrides it). Unpriceable records
    (unknown model or machine, no throughput, no token usage) give a row with the reason, not an exception:
    the report shows every pair and the leaderboard already names the fix.
    """
    pricing = load_pricing(pricing)
    qf = finetuned.primary_value if finetuned.primary_value is not None else math.nan
    qa = api.primary_value if api.primary_value is not None else math.nan
    nan = math.nan
    row: dict[str, Any] = {
        "finetuned": finetuned.name,
        "api": api.name,
        "metric": finetuned.primary_metric,
        "quality_finetuned": qf,
        "quality_api": qa,
        "eligible": False,
        "training_usd": nan,
        "amortise_months": pricing.amortise_months,
        "floor_monthly_usd": 0.0,
        "finetuned_per_request_usd": nan,
        "api_per_request_usd": nan,
        "volume": None,
    }
    why = _not_comparable(finetuned, api)
    if why:
        return BreakEven(**row, reason=f"not comparable: {why}")
    higher = finetuned.higher_is_better
    row["eligible"] = qf >= qa if higher else qf <= qa
    worse = "lower" if higher else "higher"
    ineligible = f"not eligible: {finetuned.primary_metric} {worse} than the API's"
    try:
        serving = str(finetuned.tags.get("machine") or machine)
        cf = cost_summary(finetuned, pricing, machine=serving)["per_request_usd"]
        ca = cost_summary(api, pricing)["per_request_usd"]
        _, train_usd = record_training_cost(finetuned, pricing, training_machine or machine)
        floor = pricing.machine(serving).hourly_usd * HOURS_PER_MONTH if pricing.always_on else 0.0
    except (PricingError, ValueError) as e:  # RecordError is a ValueError
        return BreakEven(**row, reason=ineligible if not row["eligible"] else f"cannot price: {e}")
    row.update(finetuned_per_request_usd=cf, api_per_request_usd=ca, training_usd=train_usd,
               floor_monthly_usd=floor)  # fmt: skip
    if not row["eligible"]:
        return BreakEven(**row, reason=ineligible)
    if math.isnan(train_usd):
        return BreakEven(**row, reason="record has no training.time_s, so its training cost is unknown")
    volume = break_even_volume(train_usd / pricing.amortise_months, cf, ca, floor)
    if volume is None:
        return BreakEven(**row, reason="never: costs at least as much per request as the API")
    row["volume"] = volume
    return BreakEven(**row, reason="")


def break_even_table(
    records: Sequence[ResultsRecord],
    pricing: Pricing | Mapping[str, Any] | None = None,
    machine: str = "cpu-2core",
    training_machine: str | None = None,
) -> list[BreakEven]:
    """Every (fine-tuned, API) pair of ``records`` on the same task, API-major in record order."""
    pricing = load_pricing(pricing)
    tuned = [r for r in records if is_finetuned(r)]
    return [
        break_even(f, a, pricing, machine=machine, training_machine=training_machine)
        for a in records
        if is_api(a)
        for f in tuned
        if f.task == a.task
    ]
