"""slmforge-compare and slmforge-report end to end for every task (classification, extraction, generation), each
with an API LLM baseline on a real loopback server (the tiny model, priced on the command line)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.records import read_predictions, read_results
from slmforge.serving import start_server

from clihelp import FAST, run_cli

ONE_SHOT = ["k_shot_baselines.k_shot.k=1"]
# A tiny model generates every answer to its full length bound (~110 tokens of invoice JSON): what keeps an
# extraction/generation run near a minute is fewer generations (examples, latency probes, validation).
FEW = [
    *ONE_SHOT, "eval.latency_probe_n=1", "eval.validation_predictions=false", "data.sizes.validation=2",
    "data.max_validation_examples=2", "data.sizes.test=3", "data.max_test_examples=3",
]  # fmt: skip
LLM = "tiny-llm"  # a served name no price table lists


@pytest.fixture(scope="module")
def served():
    lm = load_model(ModelSpec(name="tiny", source="tiny", seed=3))
    with start_server(lm.model, lm.tokenizer, model_name=LLM) as server:
        yield server


def _compare(root: Path, server, *overrides: str) -> Path:
    run = root / "run"
    proc = run_cli(
        "slmforge-compare", *FAST, *overrides, f"hydra.run.dir={run}",
        "+baseline@api_baselines.llm=api", f"api_baselines.llm.model={LLM}",
        f"api_baselines.llm.base_url={server.url}", "api_baselines.llm.max_tokens=12",
        "api_baselines.llm.cache_dir=null", f"+pricing.api.{LLM}={{input_per_1k: 0.001, output_per_1k: 0.002}}",
        cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def _check_report(run: Path, tmp_path: Path, primary: str, predictors: set[str]) -> pd.DataFrame:
    """The compare report and a separate slmforge-report over the same records: one row per predictor,
    ranked on the task's primary metric."""
    assert {p.name for p in (run / "predictors").iterdir()} == predictors
    for name in predictors:
        assert read_results(run / "predictors" / name).primary_metric == primary
    assert (run / "report" / "report.md").is_file() and (run / "report" / "report.html").is_file()
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == len(predictors) and board["name"].is_unique
    assert list(board.columns[:7]) == ["name", "method", "k", "model", "kind", "params_m", primary]
    out = tmp_path / "report"
    proc = run_cli("slmforge-report", f"runs=[{run / 'predictors'}]", f"output_dir={out}", "wandb.enabled=false",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = pd.read_csv(out / "leaderboard.csv")
    assert sorted(again["name"]) == sorted(board["name"]) and primary in again.columns
    assert f"`{primary}`" in (out / "report.md").read_text()
    llm = board.set_index("model").loc[LLM]
    assert llm["kind"] == "api" and llm["coverage"] == 1.0 and llm["cost_per_1k_usd"] > 0
    return board.set_index("name")


def test_classification(served, tmp_path):
    # Plus an API baseline whose every request fails (nothing listens on port 9): counted, never free.
    run = _compare(
        tmp_path, served, *ONE_SHOT, "+baseline@api_baselines.dead=api", "api_baselines.dead.model=gpt-4o-mini",
        "api_baselines.dead.base_url=http://127.0.0.1:9/v1", "api_baselines.dead.max_retries=0",
    )  # fmt: skip
    board = _check_report(run, tmp_path, "accuracy", {"zero_shot", "finetuned", "k_shot", "llm", "dead"})
    dead = read_results(run / "predictors" / "dead")
    assert dead.requests == {"attempted": 8, "failed": 8, "cached": 0, "budget": None, "coverage": 0.0}
    rows = read_predictions(run / "predictors" / "dead")
    assert len(rows) == 8 and all(r.pred is None and "connection error" in r.details["error"] for r in rows)
    row = board.loc["gpt-4o-mini-zero-shot"]
    assert pd.isna(row["cost_per_1k_usd"]) and row["coverage"] == 0.0 and not row["pareto"]
    assert board.index[-1] == "gpt-4o-mini-zero-shot"  # incomplete rows rank last
    md = (run / "report" / "report.md").read_text()
    assert "- gpt-4o-mini-zero-shot: answered only 0% of 8 examples (8 request(s) failed)" in md
    assert "| coverage |" in md


def test_extraction(served, tmp_path):
    run = _compare(tmp_path, served, "experiment=invoices", *FEW)
    _check_report(run, tmp_path, "field_micro_f1", {"zero_shot", "finetuned", "k_shot", "llm"})
    rows = read_predictions(run / "predictors" / "llm")
    # The tiny model's replies are no JSON: invalid predictions, scored 0, saying why.
    assert all(r.pred is None and r.correct == 0.0 and r.details["valid_json"] is False for r in rows)


def test_generation(served, tmp_path):
    run = _compare(tmp_path, served, "experiment=product_descriptions", *FEW)
    _check_report(run, tmp_path, "rougeL", {"zero_shot", "finetuned", "k_shot", "llm"})
    rows = read_predictions(run / "predictors" / "llm")
    assert len(rows) == 3 and all(isinstance(r.pred, str) and "constraints" in r.details for r in rows)
