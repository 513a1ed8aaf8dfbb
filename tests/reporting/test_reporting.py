"""Collecting, ranking, Pareto fronts, the recommendation and rendered reports on a hand-derived fixture."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slmforge.economics import PricingError, load_pricing
from slmforge.records import RecordError
from slmforge.reporting import (
    collect_records,
    decision_score,
    leaderboard,
    pareto_front,
    recommendation,
    write_report,
)


@pytest.fixture
def board(multirun_dir: Path) -> pd.DataFrame:
    return leaderboard(collect_records([multirun_dir]), load_pricing(), primary_metric="accuracy")


def test_collect_finds_every_results_file_once(multirun_dir: Path, fixture_runs) -> None:
    records = collect_records([multirun_dir, multirun_dir / "2"])  # overlapping paths: read once
    assert sorted(r.name for r in records) == sorted(fixture_runs.EXPECTED_ORDER)  # wandb/ copy skipped
    one_run = collect_records([multirun_dir / "2"])
    assert {r.name for r in one_run} == {"smol-0shot", "lora-r16"}  # results_*.json in one run dir


def test_collect_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="does-not-exist"):
        collect_records([tmp_path / "does-not-exist"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordError, match=r"empty: no results\*\.json"):
        collect_records([tmp_path / "empty"])


def test_duplicate_names_are_disambiguated(tmp_path: Path, fixture_runs) -> None:
    rec = fixture_runs.records()["lora-r4"]
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "results.json").write_text(json.dumps({**rec, "run_id": f"run{i}"}))
    assert sorted(r.name for r in collect_records([tmp_path])) == ["lora-r4 [run0]", "lora-r4 [run1]"]


def test_leaderboard_order_costs_and_columns(board: pd.DataFrame, fixture_runs) -> None:
    assert list(board["name"]) == fixture_runs.EXPECTED_ORDER
    for col in ("name", "method", "model", "params_m", "accuracy", "macro_f1", "latency_p50_ms",
                "latency_p95_ms", "latency_p99_ms", "examples_per_s", "cost_per_1k_usd",
                "monthly_cost_usd", "training_time_s", "training_cost_usd", "score", "pareto"):  # fmt: skip
        assert col in board.columns, col
    assert "per_label" not in board.columns  # nested metrics stay out of the table
    row = board.set_index("name")
    assert row.loc["gpt-4o-mini-0shot", "cost_per_1k_usd"] == pytest.approx(0.087)  # (0.075+0.012)/1000*1k
    assert row.loc["gpt-4o-5shot", "monthly_cost_usd"] == pytest.approx(39_500.0)
    assert row.loc["lora-r16", "cost_per_1k_usd"] == pytest.approx(0.10 / 3600 / 40 * 1000)
    assert row.loc["lora-r16", "training_cost_usd"] == pytest.approx(600 / 3600 * 0.10)
    assert math.isnan(row.loc["smol-0shot", "training_cost_usd"])
    # Winner's score by hand: quality best (1), cost ~best, p95 38 ms on a 30..1200 ms range.
    cost = (3.95 - 0.10 / 3600 / 40 * 1000) / (3.95 - 0.10 / 3600 / 50 * 1000)
    expected = 0.5 * 1.0 + 0.3 * cost + 0.2 * (1200 - 38) / (1200 - 30)
    assert row.loc["lora-r16", "score"] == pytest.approx(expected)
    assert row.loc["gpt-4o-5shot", "score"] == pytest.approx(0.5 * (0.80 - 0.35) / (0.91 - 0.35))


def test_pareto_set_matches_hand_derivation(board: pd.DataFrame, fixture_runs) -> None:
    assert set(board.loc[board["pareto"], "name"]) == fixture_runs.EXPECTED_PARETO


def test_pareto_front_ties_and_nans() -> None:
    df = pd.DataFrame({"q": [0.9, 0.9, 0.8, 0.95, np.nan, 0.9], "c": [1.0, 1.0, 0.5, 5.0, 0.1, 2.0]})
    # Exact duplicates (rows 0, 1) dominate neither; row 5 is dominated by 0 (same quality, dearer).
    assert list(pareto_front(df, "q", "c")) == [True, True, True, True, False, False]


def test_decision_score_normalises_and_weights() -> None:
    df = pd.DataFrame({"q": [0.5, 1.0, 0.75], "lat": [10.0, 30.0, 20.0], "const": [1.0, 1.0, 1.0]})
    s = decision_score(df, {"q": 3, "lat": 1}, {"q": "max", "lat": "min"})
    assert list(s) == pytest.approx([0.25, 0.75, 0.5])  # (3*q_norm + 1*lat_norm) / 4
    assert list(decision_score(df, {"const": 1.0})) == [1.0, 1.0, 1.0]  # no spread: full weight
    with pytest.raises(ValueError, match=">= 0"):
        decision_score(df, {"q": -1})
    with pytest.raises(KeyError, match="nope"):
        decision_score(df, {"nope": 1})


def test_recommendation_names_winner_and_numbers(board: pd.DataFrame) -> None:
    text = recommendation(board)
    assert text.startswith("Deploy `lora-r16` (fine-tuned HuggingFaceTB/SmolLM2-135M): accuracy 0.91 vs 0.80")
    assert "best prompted baseline (`gpt-4o-5shot`)" in text
    assert "p95 38 ms" in text
    # 3.95 / 0.000694 = 5688; monthly at 10M: $6.94 vs $39,500
    assert "5,688× cheaper than gpt-4o at 10M requests/month ($6.94 vs $39,500)" in text


def test_weights_change_the_winner(multirun_dir: Path) -> None:
    df = leaderboard(collect_records([multirun_dir]), weights={"cost": 1.0})
    assert df.iloc[0]["name"] == "smol-0shot"  # cheapest wins when only cost matters


def test_unknown_model_is_a_clear_error(multirun_dir: Path) -> None:
    bad = json.loads((multirun_dir / "0" / "results.json").read_text())
    bad["predictor"]["model"] = "gpt-9-ultra"
    (multirun_dir / "0" / "results.json").write_text(json.dumps(bad))
    with pytest.raises(PricingError, match=r"gpt-9-ultra.*conf/pricing/default\.yaml"):
        leaderboard(collect_records([multirun_dir]))


def test_missing_throughput_is_a_warning_not_a_crash(multirun_dir: Path) -> None:
    rec = json.loads((multirun_dir / "3" / "results.json").read_text())
    rec["throughput"] = {}
    (multirun_dir / "3" / "results.json").write_text(json.dumps(rec))
    df = leaderboard(collect_records([multirun_dir]))
    assert math.isnan(df.set_index("name").loc["lora-r4", "cost_per_1k_usd"])
    assert any("lora-r4" in w for w in df.attrs["warnings"])


def test_write_report_markdown_html_and_plots(board: pd.DataFrame, tmp_path: Path) -> None:
    extra_png = tmp_path / "elsewhere" / "routing.png"
    extra_png.parent.mkdir()
    from slmforge.reporting.plots import plot_quality_vs_cost

    plot_quality_vs_cost(board, extra_png)
    files = write_report(
        board, tmp_path / "out", extra_sections=[("Routing", "Cascade **helps**.", [extra_png])]
    )
    for p in (files.markdown, files.html, files.csv, *files.plots.values()):
        assert p.is_file() and p.stat().st_size > 0, p
    assert (tmp_path / "out" / "routing.png").is_file()  # extra PNGs are copied next to the report
    md = files.markdown.read_text()
    assert "](quality_vs_cost.png)" in md and "](quality_vs_latency.png)" in md and "## Routing" in md
    assert "| 1 | lora-r16 |" in md and "Deploy `lora-r16`" in md
    html = files.html.read_text()
    assert html.count('src="data:image/png;base64,') == 3
    assert "<table>" in html and "<td>lora-r16</td>" in html and "<strong>helps</strong>" in html
    assert 'src="quality_vs_cost.png"' not in html  # nothing left pointing at a side file
    assert pd.read_csv(files.csv)["name"].iloc[0] == "lora-r16"


def test_recommendation_when_a_prompted_model_wins(multirun_dir: Path) -> None:
    records = [r for r in collect_records([multirun_dir]) if r.predictor["kind"] == "api"]
    df = leaderboard(records, weights={"quality": 1.0})
    text = recommendation(df)
    assert text.startswith("Deploy `gpt-4o-5shot` (5-shot gpt-4o via API): accuracy 0.80 vs 0.62")
    assert "45× more expensive than gpt-4o-mini" in text  # 3.95 / 0.087 = 45.4
