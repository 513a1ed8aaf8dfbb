"""Cost per request for API and self-hosted predictors, and the phrases a report uses to compare them.

Two bases, because the two kinds of predictor are billed differently:

- ``api``: tokens × list price. The record's *mean* prompt and completion tokens per answered request
  are used, so a k-shot prompt's longer context is charged for. A run with no token usage (every request
  failed) cannot be priced: a failed request is not a free one.
- ``self_hosted``: a machine is paid by the hour whatever it does, so a request costs
  ``hourly_usd / 3600 / (examples_per_s × utilisation)``, with the record's batched throughput (the rate
  a server with queued traffic reaches) and the pricing table's utilisation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from slmforge.economics.pricing import ApiPrice, Pricing, PricingError, load_pricing
from slmforge.errors import RecordError
from slmforge.records import ResultsRecord


def api_cost_per_request(
    prompt_tokens: float, completion_tokens: float, price: ApiPrice | Mapping[str, float]
) -> float:
    """USD for one request of ``prompt_tokens`` in and ``completion_tokens`` out at a per-1k-token price."""
    if isinstance(price, Mapping):
        price = ApiPrice(float(price["input_per_1k"]), float(price["output_per_1k"]))
    if prompt_tokens < 0 or completion_tokens < 0:
        raise ValueError(f"token counts must be >= 0, got {prompt_tokens} and {completion_tokens}")
    return prompt_tokens / 1000.0 * price.input_per_1k + completion_tokens / 1000.0 * price.output_per_1k


def self_hosted_cost_per_request(examples_per_s: float, hourly_usd: float, utilisation: float = 1.0) -> float:
    """USD for one request on a machine that costs ``hourly_usd`` and serves ``examples_per_s``.

    ``utilisation`` < 1 models idle paid time (bursty traffic): the same bill spread over fewer requests.
    """
    if not examples_per_s or examples_per_s <= 0 or math.isnan(examples_per_s):
        raise ValueError(
            f"throughput must be > 0 examples/s to price a self-hosted run, got {examples_per_s}"
        )
    if not 0.0 < utilisation <= 1.0:
        raise ValueError(f"utilisation must be in (0, 1], got {utilisation}")
    if hourly_usd < 0:
        raise ValueError(f"hourly price must be >= 0, got {hourly_usd}")
    return hourly_usd / 3600.0 / (examples_per_s * utilisation)


def monthly_cost(per_request_usd: float, monthly_requests: int) -> float:
    """Monthly bill at a given volume (linear: no volume discounts, no fixed minimum)."""
    return per_request_usd * monthly_requests


def training_cost(time_s: float, hourly_usd: float) -> float:
    """One-off cost of a fine-tuning run: wall time × the hourly price of the machine it ran on."""
    if time_s < 0:
        raise ValueError(f"training time must be >= 0 s, got {time_s}")
    return time_s / 3600.0 * hourly_usd


def cost_summary(
    record: ResultsRecord,
    pricing: Pricing | Mapping[str, Any] | None = None,
    machine: str = "cpu-2core",
    monthly_requests: int | None = None,
    utilisation: float | None = None,
) -> dict[str, Any]:
    """Per-request, per-1k-request, monthly and per-1k-token cost of the predictor behind ``record``.

    API predictors (``record.predictor["kind"] == "api"``) are priced from the record's mean tokens and
    the model's row in the pricing table; local ones from ``record.throughput["examples_per_s"]`` on
    ``machine`` (a ``tags["machine"]`` in the record overrides it: the throughput was measured there).
    Raises :class:`PricingError` for an unknown model/machine, ``ValueError`` for a record that lacks
    the tokens or throughput it needs, and :class:`~slmforge.errors.RecordError` (a ``ValueError``) for an
    API run without token usage: one whose requests all failed is unpriceable, never free.
    """
    pricing = load_pricing(pricing)
    volume = int(monthly_requests if monthly_requests is not None else pricing.monthly_requests)
    util = float(utilisation if utilisation is not None else pricing.utilisation)
    kind = str(record.predictor.get("kind", "local"))
    prompt = float(record.tokens.get("prompt_mean", 0.0) or 0.0)
    completion = float(record.tokens.get("completion_mean", 0.0) or 0.0)

    if kind == "api":
        model = str(record.predictor.get("model", ""))
        if not model:
            raise PricingError(f"record '{record.name}': API predictor has no model name to price")
        if "prompt_mean" not in record.tokens:
            raise ValueError(f"record '{record.name}': API run has no tokens.prompt_mean to price it by")
        if not prompt + completion > 0:  # also NaN: no request got a reply to take the means over
            failed = record.requests.get("failed")
            why = f"{failed} of its {record.n} requests failed" if failed else "it recorded no token usage"
            raise RecordError(
                f"record '{record.name}': {why}, so there are no tokens to price it by (a failed request "
                "is not a free one); rerun it once the endpoint answers"
            )
        per_request = api_cost_per_request(prompt, completion, pricing.api_price(model))
        basis, priced_as = "api", model
    else:
        machine = str(record.tags.get("machine") or machine)
        eps = record.throughput.get("examples_per_s")
        if eps is None:
            raise ValueError(
                f"record '{record.name}': local run has no throughput.examples_per_s to price it by"
            )
        hourly = pricing.machine(machine).hourly_usd
        per_request = self_hosted_cost_per_request(float(eps), hourly, util)
        basis, priced_as = "self_hosted", machine

    tokens = prompt + completion
    return {
        "per_request_usd": per_request,
        "per_1k_requests_usd": per_request * 1000.0,
        "monthly_usd": monthly_cost(per_request, volume),
        "per_1k_tokens_usd": per_request / tokens * 1000.0 if tokens > 0 else math.nan,
        "basis": basis,
        "priced_as": priced_as,
        "monthly_requests": volume,
    }


def record_training_cost(
    record: ResultsRecord, pricing: Pricing | Mapping[str, Any] | None, machine: str
) -> tuple[float, float]:
    """(training time in s, training cost in USD) for a record; NaNs when the run did no training.

    ``record.training["machine"]`` overrides ``machine`` (fine-tuning usually runs on a bigger box than
    serving).
    """
    time_s = record.training.get("time_s") if record.training else None
    if time_s is None:
        return math.nan, math.nan
    pricing = load_pricing(pricing)
    name = str(record.training.get("machine") or machine)
    return float(time_s), training_cost(float(time_s), pricing.machine(name).hourly_usd)


def ratio(value: float, reference: float, lower: str = "cheaper", higher: str = "more expensive") -> str:
    """How ``value`` compares with ``reference`` in words, e.g. ``ratio(40, 300) == "7.5× cheaper"``."""
    if any(math.isnan(x) for x in (value, reference)) or value < 0 or reference < 0:
        return "not comparable"
    if value == reference:
        return "the same cost" if lower == "cheaper" else "the same"
    if value == 0:
        return f"free, i.e. infinitely {lower}" if lower == "cheaper" else f"infinitely {lower}"
    if reference == 0:
        return f"infinitely {higher}"
    factor = reference / value if value < reference else value / reference
    word = lower if value < reference else higher
    return f"{format_factor(factor)}× {word}"


def format_factor(x: float) -> str:
    """1.27 -> "1.3", 7.5 -> "7.5", 12.4 -> "12", 5688.3 -> "5,688": two significant figures at least."""
    if x >= 10:
        return f"{x:,.0f}"
    return f"{x:.1f}"
