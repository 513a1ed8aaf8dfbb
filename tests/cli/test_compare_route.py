"""slmforge-compare (with an API model on a real loopback server) and slmforge-route on its output."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.records import read_results
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
