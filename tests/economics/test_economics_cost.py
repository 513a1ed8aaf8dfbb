"""Cost arithmetic checked against hand-computed values, and the shipped price table."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from slmforge.economics import (
    Pricing,
    PricingError,
    api_cost_per_request,
    cost_summary,
    load_pricing,
    ratio,
    record_training_cost,
    self_hosted_cost_per_request,
    training_cost,
)
from slmforge.errors import RecordError
from slmforge.records import ResultsRecord, latency_summary

CONF = Path(__file__).resolve().parents[2] / "conf"
PRICING = Pricing.from_config(
    {
        "monthly_requests": 10_000_000,
        "api": {"big-api": {"input_per_1k": 0.0025, "output_per_1k": 0.01}},
        "self_hosted": {"box": {"hourly_usd": 3.6}, "cpu-2core": {"hourly_usd": 0.10}},
    },
    source="test-pricing.yaml",
)


def _record(kind: str, **kw) -> ResultsRecord:
    base = {
        "run_id": "r", "name": "run", "task": "t", "split": "test", "n": 10,
        "predictor": {"kind": kind, "method": "zero_shot", "model": "big-api"},
        "data": {}, "metrics": {"accuracy": 0.5},
        "tokens": {"prompt_mean": 500, "completion_mean": 20},
        "throughput": {"examples_per_s": 10.0},
    }  # fmt: skip
    base.update(kw)
    return ResultsRecord.from_dict(base)


def test_api_cost_by_hand() -> None:
    # 500/1000 * 0.0025 + 20/1000 * 0.01 = 0.00125 + 0.0002
    assert api_cost_per_request(500, 20, {"input_per_1k": 0.0025, "output_per_1k": 0.01}) == pytest.approx(
        0.00145, rel=1e-12
    )
    assert api_cost_per_request(0, 0, PRICING.api["big-api"]) == 0.0


def test_self_hosted_cost_by_hand() -> None:
    # $3.60/h = $0.001/s; at 10 requests/s each costs $0.0001; half utilised, twice that.
    assert self_hosted_cost_per_request(10.0, 3.6) == pytest.approx(1e-4, rel=1e-12)
    assert self_hosted_cost_per_request(10.0, 3.6, utilisation=0.5) == pytest.approx(2e-4, rel=1e-12)
    with pytest.raises(ValueError, match="throughput"):
        self_hosted_cost_per_request(0.0, 3.6)
    with pytest.raises(ValueError, match="utilisation"):
        self_hosted_cost_per_request(10.0, 3.6, utilisation=0.0)


def test_cost_summary_api_record() -> None:
    s = cost_summary(_record("api"), PRICING)
    assert s["basis"] == "api"
    assert s["per_request_usd"] == pytest.approx(0.00145)
    assert s["per_1k_requests_usd"] == pytest.approx(1.45)
    assert s["monthly_usd"] == pytest.approx(14_500.0)  # 0.00145 * 10M
    assert s["per_1k_tokens_usd"] == pytest.approx(0.00145 / 520 * 1000)
    assert cost_summary(_record("api"), PRICING, monthly_requests=1000)["monthly_usd"] == pytest.approx(1.45)


def test_an_api_run_without_replies_is_never_priced_free() -> None:
    all_failed = _record(
        "api",
        tokens={"prompt_mean": float("nan"), "completion_mean": float("nan")},
        requests={"attempted": 30, "failed": 10, "cached": 0, "budget": None, "coverage": 0.0},
    )
    with pytest.raises(RecordError, match=r"10 of its 10 requests failed.*not a free one"):
        cost_summary(all_failed, PRICING)
    # A record from before request accounting: zero tokens is no usage, not a free model.
    no_usage = _record("api", tokens={"prompt_mean": 0.0, "completion_mean": 0.0})
    with pytest.raises(RecordError, match="recorded no token usage"):
        cost_summary(no_usage, PRICING)


def test_cost_summary_local_record_uses_machine_and_throughput() -> None:
    s = cost_summary(_record("local"), PRICING, machine="box")
    assert s["basis"] == "self_hosted"
    assert s["per_request_usd"] == pytest.approx(1e-4)
    assert s["per_1k_requests_usd"] == pytest.approx(0.1)
    assert s["monthly_usd"] == pytest.approx(1000.0)
    # A record measured on a given machine says so; that wins over the report-wide default.
    s = cost_summary(_record("local", tags={"machine": "cpu-2core"}), PRICING, machine="box")
    assert s["per_request_usd"] == pytest.approx(0.10 / 3600 / 10)
    with pytest.raises(ValueError, match="examples_per_s"):
        cost_summary(_record("local", throughput={}), PRICING, machine="box")


def test_unknown_model_and_machine_give_clear_errors() -> None:
    rec = _record("api", predictor={"kind": "api", "method": "zero_shot", "model": "mystery-llm"})
    with pytest.raises(PricingError, match=r"mystery-llm.*test-pricing\.yaml"):
        cost_summary(rec, PRICING)
    with pytest.raises(PricingError, match=r"machine 'tpu-v9'.*test-pricing\.yaml"):
        cost_summary(_record("local"), PRICING, machine="tpu-v9")
    # The default table names the file a user should edit.
    with pytest.raises(PricingError, match=r"mystery-llm.*conf/pricing/default\.yaml"):
        load_pricing().api_price("mystery-llm")


def test_model_lookup_tolerates_provider_prefix_and_snapshot() -> None:
    p = load_pricing()
    assert p.api_price("openai/gpt-4o-mini-2024-07-18") == p.api["gpt-4o-mini"]
    assert p.api_price("GPT-4o") == p.api["gpt-4o"]


def test_training_cost() -> None:
    assert training_cost(600, 0.10) == pytest.approx(0.10 / 6)
    rec = _record("local", training={"time_s": 1800.0, "machine": "box"})
    assert record_training_cost(rec, PRICING, machine="cpu-2core") == (1800.0, pytest.approx(1.8))


def test_ratio_phrases() -> None:
    assert ratio(40, 300) == "7.5× cheaper"
    assert ratio(300, 40) == "7.5× more expensive"
    assert ratio(1, 5688.3) == "5,688× cheaper"
    assert ratio(5, 5) == "the same cost"


def test_latency_percentiles_on_known_data() -> None:
    s = latency_summary(list(range(1, 101)))
    assert s["p50"] == pytest.approx(50.5)
    assert s["p95"] == pytest.approx(95.05)
    assert s["p99"] == pytest.approx(99.01)
    assert s["mean"] == pytest.approx(50.5)


def test_shipped_price_table() -> None:
    p = load_pricing()
    assert p.monthly_requests == 10_000_000
    assert p.api["llama-3.1-70b"].input_per_1k == pytest.approx(0.015)
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo", "claude-3.5-sonnet", "claude-3-haiku"):
        assert 0 < p.api[model].input_per_1k <= p.api[model].output_per_1k
    assert p.self_hosted["cpu-2core"].hourly_usd == pytest.approx(0.10)
    assert 2.0 <= p.self_hosted["h100"].hourly_usd <= 4.0


def test_report_config_composes_pricing() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="report", overrides=["runs=[x]"])
    assert cfg.monthly_requests == 10_000_000
    assert cfg.training_machine == cfg.machine == "cpu-2core"
    assert dict(cfg.weights) == {"quality": 0.5, "cost": 0.3, "latency": 0.2}
    assert Pricing.from_config(cfg.pricing).api["gpt-4o"].output_per_1k == pytest.approx(0.01)
