"""slmforge-compare (with an API model on a real loopback server) and slmforge-route on its output."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.records import read_predictions, read_results
from slmforge.routing import RoutingPolicy
from slmforge.serving import start_server

from clihelp import FAST, run_cli


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=3))
    # A real OpenAI-compatible HTTP server on loopback, serving a tiny model under a priced API name.
    with start_server(lm.model, lm.tokenizer, model_name="gpt-4o-mini") as server:
        proc = run_cli(
            "slmforge-compare", *FAST, f"hydra.run.dir={root / 'run'}",
            "+baseline@api_baselines.llm=api", f"api_baselines.llm.base_url={server.url}",
            "api_baselines.llm.model=gpt-4o-mini", "api_baselines.llm.max_tokens=8",
            f"api_baselines.llm.cache_dir={root / 'cache'}",
            cwd=root,
        )  # fmt: skip
        served = server.stats()["requests"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run", served


def test_compare_evaluates_every_predictor_and_writes_the_report(comparison):
    run, served = comparison
    methods = {name: read_results(run / "predictors" / name).predictor["method"] for name in
               ("zero_shot", "k_shot", "finetuned", "llm")}  # fmt: skip
    assert methods == {
        "zero_shot": "zero_shot",
        "k_shot": "k_shot",
        "finetuned": "finetuned",
        "llm": "zero_shot",
    }
    api = read_results(run / "predictors" / "llm")
    assert api.predictor["kind"] == "api" and api.n == 8
    assert served == 16  # 8 test + 8 validation requests, no retries
    assert api.tokens["prompt_mean"] > 0
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == 4
    assert board["cost_per_1k_usd"].notna().all()
    html = (run / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "gpt-4o-mini" in html


def test_route_between_finetuned_and_k_shot(comparison, tmp_path):
    run, _ = comparison
    out = tmp_path / "route"
    proc = run_cli(
        "slmforge-route", f"cheap={run / 'predictors/finetuned'}", f"expensive={run / 'predictors/k_shot'}",
        f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    routing = json.loads((out / "routing.json").read_text())
    assert routing["selected_on"] == "validation"
    shares = [p["escalated_share"] for p in routing["points"]]
    assert shares[0] == 0.0 and shares[-1] == 1.0 and shares == sorted(shares)
    policy = RoutingPolicy.load(out / "routing_policy.json")
    assert policy.threshold == routing["chosen"]["threshold"]
    assert "SLM → LLM routing" in (out / "report.md").read_text()
    for png in ("routing_curve.png", "reliability.png"):
        assert (out / png).stat().st_size > 1000


def test_route_with_unreachable_target_fails_clearly(comparison, tmp_path):
    run, _ = comparison
    proc = run_cli(
        "slmforge-route", f"cheap={run / 'predictors/finetuned'}", f"expensive={run / 'predictors/k_shot'}",
        "routing.target=1.5", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "target" in proc.stderr and "Traceback" not in proc.stderr


def test_api_baseline_record_has_request_latency_and_accounting(comparison):
    run, _ = comparison
    api = read_results(run / "predictors" / "llm")
    assert all(math.isfinite(api.latency_ms[q]) and api.latency_ms[q] > 0 for q in ("p50", "p95", "p99"))
    assert api.latency_ms["p50"] <= api.latency_ms["p95"] <= api.latency_ms["p99"]
    # The test split's requests (the validation pass is not counted), none failed or cached.
    assert api.requests == {"attempted": 8, "failed": 0, "cached": 0, "budget": None, "coverage": 1.0}


def test_route_reads_api_predictions_that_did_not_parse(comparison, tmp_path):
    run, _ = comparison
    rows = read_predictions(run / "predictors" / "llm")
    unparsed = [r for r in rows if r.pred is None]
    assert unparsed  # the tiny model's replies name no label
    assert all(r.correct == 0.0 and "invalid" in r.details for r in unparsed)
    out = tmp_path / "route"
    proc = run_cli(
        "slmforge-route", f"cheap={run / 'predictors/finetuned'}", f"expensive={run / 'predictors/llm'}",
        f"hydra.run.dir={out}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    routing = json.loads((out / "routing.json").read_text())
    assert routing["expensive_only"]["metric"] == pytest.approx(sum(r.correct for r in rows) / len(rows))


def test_unpriced_api_model_stops_compare_before_training(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-compare", *FAST, f"hydra.run.dir={run}", "+baseline@api_baselines.x=api",
        "api_baselines.x.model=no-such-model", "api_baselines.x.base_url=http://127.0.0.1:9/v1", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "api_baselines.x" in line and "'no-such-model'" in line and "nothing has run yet" in line
    assert "'+pricing.api.no-such-model={input_per_1k: ..., output_per_1k: ...}'" in line
    assert "Traceback" not in proc.stderr
    assert not (run / "predictors").exists() and not (run / "checkpoints").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    proc = run_cli("slmforge-train", *FAST, f"hydra.run.dir={root / 'run'}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run"


def test_llm_is_added_to_an_existing_run_without_retraining(trained, tmp_path):
    finetuned = trained / "predictors" / "finetuned" / "results.json"
    before = finetuned.read_bytes()
    checkpoint = (trained / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=3))
    with start_server(lm.model, lm.tokenizer, model_name="tiny-llm") as server:
        proc = run_cli(
            "slmforge-compare", f"run_dir={trained}", "+baseline@api_baselines.llm=api",
            "api_baselines.llm.model=tiny-llm", f"api_baselines.llm.base_url={server.url}",
            "api_baselines.llm.max_tokens=4", "api_baselines.llm.cache_dir=null", "k_shot_baselines.k_shot=null",
            # A served model has no list price: price it on the command line (USD per 1k tokens).
            "+pricing.api.tiny-llm={input_per_1k: 0.001, output_per_1k: 0.002}",
            f"hydra.run.dir={tmp_path / 'job'}", cwd=tmp_path,
        )  # fmt: skip
        served = server.stats()["requests"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert served == 16  # 8 test + 8 validation requests
    llm = read_results(trained / "predictors" / "llm")
    assert llm.predictor["kind"] == "api" and llm.predictor["model"] == "tiny-llm" and llm.n == 8
    assert finetuned.read_bytes() == before  # nothing retrained or re-evaluated
    assert (trained / "checkpoints" / "last.ckpt").stat().st_mtime_ns == checkpoint
    assert not (trained / "predictors" / "k_shot").exists()
    board = pd.read_csv(trained / "report" / "leaderboard.csv").set_index("name")
    assert {"tiny-lora", "tiny-zero-shot", "tiny-llm-zero-shot"} == set(board.index)
    # Priced at the command line's price: per 1k requests, mean tokens x USD per 1k tokens.
    expected = llm.tokens["prompt_mean"] * 0.001 + llm.tokens["completion_mean"] * 0.002
    assert board.loc["tiny-llm-zero-shot", "cost_per_1k_usd"] == pytest.approx(expected)
    md = (trained / "report" / "report.md").read_text()
    assert "| tiny-lora |" in md and "| tiny-llm-zero-shot |" in md
