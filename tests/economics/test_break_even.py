"""Break-even volumes checked against hand-computed values (see the numbers in each test)."""

from __future__ import annotations

import math

import pytest

from slmforge.economics import (
    Pricing,
    PricingError,
    break_even,
    break_even_table,
    break_even_volume,
    load_pricing,
)
from slmforge.records import ResultsRecord

# big-api: 500 in + 20 out at $0.0025/$0.01 per 1k = $0.00145 per request.
# box: $3.60/h at 10 examples/s = 3.6 / 3600 / 10 = $0.0001 per request; 1 h of training on it = $3.60,
# amortised over 12 months = $0.30 a month.
PRICING = {
    "amortise_months": 12,
    "api": {"big-api": {"input_per_1k": 0.0025, "output_per_1k": 0.01}},
    "self_hosted": {"box": {"hourly_usd": 3.6}},
}


def _api(acc: float = 0.80, **kw) -> ResultsRecord:
    d = {
        "run_id": "a", "name": "big-api-0shot", "task": "t", "split": "test", "n": 100,
        "predictor": {"kind": "api", "method": "zero_shot", "model": "big-api"},
        "data": {"name": "tickets", "sizes": {"test": 100}}, "metrics": {"accuracy": acc},
        "tokens": {"prompt_mean": 500, "completion_mean": 20},
    }  # fmt: skip
    d.update(kw)
    return ResultsRecord.from_dict(d)


def _tuned(acc: float = 0.85, eps: float = 10.0, time_s: float | None = 3600.0, **kw) -> ResultsRecord:
    d = {
        "run_id": "f", "name": "small-lora", "task": "t", "split": "test", "n": 100,
        "predictor": {"kind": "local", "method": "finetuned", "model": "small"},
        "data": {"name": "tickets", "sizes": {"train": 80, "test": 100}}, "metrics": {"accuracy": acc},
        "throughput": {"examples_per_s": eps}, "tokens": {"prompt_mean": 100, "completion_mean": 2},
        "training": {} if time_s is None else {"time_s": time_s},
    }  # fmt: skip
    d.update(kw)
    return ResultsRecord.from_dict(d)


def test_volume_formula_by_hand() -> None:
    # max(0.30 / 0.00145, 0.30 / (0.00145 - 0.0001)) = 0.30 / 0.00135 = 222.2
    assert break_even_volume(0.30, 0.0001, 0.00145) == pytest.approx(222.2222222, rel=1e-9)
    # A floor of $2628 (one $3.60/h machine x 730 h): (0.30 + 2628) / 0.00145 = 1,812,620.7, which is where
    # the API bill reaches the floor (the machine's own per-request cost, $181 there, is under it).
    assert break_even_volume(0.30, 0.0001, 0.00145, 2628.0) == pytest.approx(1_812_620.6897, rel=1e-9)
    # A floor small enough that per-request cost decides: max(1.3/0.00145, 0.30/0.00135) = 896.6
    assert break_even_volume(0.30, 0.0001, 0.00145, 1.0) == pytest.approx(896.5517241, rel=1e-9)
    assert break_even_volume(0.0, 0.0001, 0.00145) == 0.0  # nothing to pay off: cheaper from request one
    assert break_even_volume(0.30, 0.00145, 0.00145) is None  # same per-request cost: never pays off
    assert break_even_volume(0.30, 0.002, 0.00145) is None
    with pytest.raises(ValueError, match="costs must be >= 0"):
        break_even_volume(math.nan, 0.0001, 0.00145)


def test_finetuned_cheaper_per_request_has_finite_break_even() -> None:
    be = break_even(_tuned(), _api(), PRICING, machine="box")
    assert be.eligible and be.reason == ""
    assert be.api_per_request_usd == pytest.approx(0.00145, rel=1e-12)
    assert be.finetuned_per_request_usd == pytest.approx(0.0001, rel=1e-12)
    assert be.training_usd == pytest.approx(3.6, rel=1e-12)
    assert be.fixed_monthly_usd == pytest.approx(0.30, rel=1e-12)
    assert be.volume == pytest.approx(222.2222222, rel=1e-9)
    # At the break-even the two monthly bills are equal: 222.2 * 0.00145 = 0.30 + 222.2 * 0.0001 = 0.3222
    assert be.monthly_api_usd(be.volume) == pytest.approx(0.3222222, rel=1e-6)
    assert be.monthly_finetuned_usd(be.volume) == pytest.approx(0.3222222, rel=1e-6)
    # Training on another machine: training.machine wins over the argument. 1 h on a $1.20 box = $0.10/month.
    pricing = {**PRICING, "self_hosted": {"box": {"hourly_usd": 3.6}, "trainer": {"hourly_usd": 1.2}}}
    be = break_even(_tuned(training={"time_s": 3600.0, "machine": "trainer"}), _api(), pricing, machine="box")
    assert be.volume == pytest.approx(0.10 / 0.00135, rel=1e-9)


def test_amortise_months_and_always_on_change_the_volume() -> None:
    quarterly = break_even(_tuned(), _api(), {**PRICING, "amortise_months": 3}, machine="box")
    assert quarterly.volume == pytest.approx(1.2 / 0.00135, rel=1e-9)  # $3.60 over 3 months = $1.20/month
    dedicated = break_even(_tuned(), _api(), {**PRICING, "always_on": True}, machine="box")
    assert dedicated.floor_monthly_usd == pytest.approx(3.6 * 730, rel=1e-12)
    assert dedicated.volume == pytest.approx(1_812_620.6897, rel=1e-9)
    assert dedicated.monthly_finetuned_usd(1000) == pytest.approx(2628.30, rel=1e-9)


def test_equal_quality_counts_as_equal_or_better() -> None:
    be = break_even(_tuned(acc=0.80), _api(acc=0.80), PRICING, machine="box")
    assert be.eligible and be.volume == pytest.approx(222.2222222, rel=1e-9)


def test_worse_quality_is_not_eligible_but_still_priced() -> None:
    be = break_even(_tuned(acc=0.79), _api(acc=0.80), PRICING, machine="box")
    assert not be.eligible and be.volume is None
    assert be.reason == "not eligible: accuracy lower than the API's"
    assert be.finetuned_per_request_usd == pytest.approx(0.0001, rel=1e-12)


def test_lower_is_better_metric_flips_eligibility() -> None:
    kw = {"primary_metric": "cer", "higher_is_better": False}
    be = break_even(_tuned(metrics={"cer": 0.10}, **kw), _api(metrics={"cer": 0.12}, **kw), PRICING, "box")
    assert be.eligible and be.volume == pytest.approx(222.2222222, rel=1e-9)
    be = break_even(_tuned(metrics={"cer": 0.20}, **kw), _api(metrics={"cer": 0.12}, **kw), PRICING, "box")
    assert not be.eligible and be.reason == "not eligible: cer higher than the API's"


def test_not_cheaper_per_request_never_breaks_even() -> None:
    # 0.5 examples/s on the $3.60 box = $0.002 per request > the API's $0.00145.
    be = break_even(_tuned(eps=0.5), _api(), PRICING, machine="box")
    assert be.eligible and be.volume is None
    assert be.finetuned_per_request_usd == pytest.approx(0.002, rel=1e-12)
    assert be.reason == "never: costs at least as much per request as the API"


def test_missing_training_time_and_unpriceable_records_say_why() -> None:
    be = break_even(_tuned(time_s=None), _api(), PRICING, machine="box")
    assert be.volume is None and "no training.time_s" in be.reason
    be = break_even(_tuned(), _api(), PRICING, machine="nowhere")
    assert be.volume is None and be.reason.startswith(
        "cannot price: no self-hosted price for machine 'nowhere'"
    )


def test_records_measuring_different_things_are_not_compared() -> None:
    be = break_even(_tuned(), _api(data={"name": "tickets", "sizes": {"test": 50}}), PRICING, machine="box")
    assert be.reason == "not comparable: evaluated on different test splits (test: 100 rows vs test: 50 rows)"
    be = break_even(_tuned(), _api(primary_metric="macro_f1", metrics={"macro_f1": 0.5}), PRICING, "box")
    assert be.reason == "not comparable: different primary metrics (accuracy vs macro_f1)"


def test_table_pairs_every_finetuned_with_every_api_record() -> None:
    zero_shot = _tuned(
        name="small-0shot", predictor={"kind": "local", "method": "zero_shot", "model": "small"}
    )
    recs = [_api(), _tuned(), _tuned(name="small-lora-2", acc=0.5), zero_shot, _api(name="other", run_id="b")]
    rows = break_even_table(recs, PRICING, machine="box")
    assert [(r.api, r.finetuned) for r in rows] == [
        ("big-api-0shot", "small-lora"), ("big-api-0shot", "small-lora-2"),
        ("other", "small-lora"), ("other", "small-lora-2"),
    ]  # fmt: skip
    assert [r.eligible for r in rows] == [True, False, True, False]


def test_pricing_keys_default_and_validate() -> None:
    shipped = load_pricing()
    assert shipped.amortise_months == 12 and shipped.always_on is False
    assert Pricing.from_config({}).amortise_months == 12
    with pytest.raises(PricingError, match="amortise_months must be > 0"):
        Pricing.from_config({"amortise_months": 0}, source="p.yaml")
    with pytest.raises(PricingError, match="always_on must be true or false"):
        Pricing.from_config({"always_on": "yes"}, source="p.yaml")
