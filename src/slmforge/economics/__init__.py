"""Economics: what a request, a month of traffic and a fine-tuning run cost, for API and self-hosted models."""

from slmforge.economics.break_even import (
    BreakEven,
    break_even,
    break_even_table,
    break_even_volume,
)
from slmforge.economics.cost import (
    api_cost_per_request,
    cost_summary,
    format_factor,
    monthly_cost,
    ratio,
    record_training_cost,
    self_hosted_cost_per_request,
    training_cost,
)
from slmforge.economics.pricing import (
    ApiPrice,
    MachinePrice,
    Pricing,
    PricingError,
    default_pricing_path,
    load_pricing,
)

__all__ = [
    "ApiPrice",
    "BreakEven",
    "MachinePrice",
    "Pricing",
    "PricingError",
    "api_cost_per_request",
    "break_even",
    "break_even_table",
    "break_even_volume",
    "cost_summary",
    "default_pricing_path",
    "format_factor",
    "load_pricing",
    "monthly_cost",
    "ratio",
    "record_training_cost",
    "self_hosted_cost_per_request",
    "training_cost",
]
