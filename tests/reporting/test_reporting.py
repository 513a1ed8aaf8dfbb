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
    display_table,
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


def _edit(path: Path, **changes) -> None:
    rec = json.loads(path.read_text())
    for key, value in changes.items():
        rec[key] = {**rec.get(key, {}), **value} if isinstance(value, dict) else value
    path.write_text(json.dumps(rec))


def test_unpriced_api_model_has_unknown_cost_and_is_off_the_front(multirun_dir: Path, fixture_runs) -> None:
    # The most accurate run (it would be on the front at any price) with a model missing from the table.
    _edit(multirun_dir / "0" / "results.json", predictor={"model": "gpt-9-ultra"}, metrics={"accuracy": 0.99})
    df = leaderboard(collect_records([multirun_dir]))
    row = df.set_index("name").loc["gpt-4o-mini-0shot"]
    assert math.isnan(row["cost_per_1k_usd"]) and math.isnan(row["monthly_cost_usd"])
    assert row["priced_as"] == "unknown" and not row["pareto"]
    assert set(df.loc[df["pareto"], "name"]) == fixture_runs.EXPECTED_PARETO
    [warning] = [w for w in df.attrs["warnings"] if w.startswith("gpt-4o-mini-0shot")]
    assert "cost unknown" in warning and "gpt-9-ultra" in warning and "conf/pricing/default.yaml" in warning
    # An unknown machine is a report setting to fix: still an error.
    with pytest.raises(PricingError, match="no-such-box"):
        leaderboard(collect_records([multirun_dir]), machine="no-such-box")


def test_a_predictor_whose_requests_all_failed_is_not_free(multirun_dir: Path, fixture_runs) -> None:
    # Every request failed: no tokens, accuracy 0 (written by an older evaluation as zero tokens).
    _edit(
        multirun_dir / "0" / "results.json",
        tokens={"prompt_mean": 0.0, "completion_mean": 0.0},
        metrics={"accuracy": 0.0, "macro_f1": 0.0},
        requests={"attempted": 1000, "failed": 200, "cached": 0, "budget": None, "coverage": 0.0},
    )
    df = leaderboard(collect_records([multirun_dir]))
    row = df.set_index("name").loc["gpt-4o-mini-0shot"]
    assert math.isnan(row["cost_per_1k_usd"]) and row["coverage"] == 0.0 and not row["pareto"]
    assert df.iloc[-1]["name"] == "gpt-4o-mini-0shot"
    assert set(df.loc[df["pareto"], "name"]) == fixture_runs.EXPECTED_PARETO
    warnings = [w for w in df.attrs["warnings"] if w.startswith("gpt-4o-mini-0shot")]
    assert any("200 of its 200 requests failed" in w and "not a free one" in w for w in warnings)
    assert any("answered only 0% of 200 examples (200 request(s) failed)" in w for w in warnings)
    assert "gpt-4o-mini" not in recommendation(df)


def test_partial_coverage_ranks_last_and_is_never_recommended(multirun_dir: Path, tmp_path: Path) -> None:
    # A request budget ran out half way; on the half it finished it is the best and the dearest.
    _edit(
        multirun_dir / "1" / "results.json",
        metrics={"accuracy": 0.99},
        requests={"attempted": 100, "failed": 0, "cached": 0, "budget": 100, "coverage": 0.5},
    )
    df = leaderboard(collect_records([multirun_dir]), weights={"quality": 1.0})
    assert df.iloc[-1]["name"] == "gpt-4o-5shot" and not df.iloc[-1]["pareto"]
    assert df.iloc[0]["name"] == "lora-r16"
    assert df.set_index("name")["coverage"].to_dict() == {
        "lora-r16": 1.0, "lora-r4": 1.0, "gpt-4o-mini-0shot": 1.0, "smol-0shot": 1.0, "gpt-4o-5shot": 0.5,
    }  # fmt: skip
    text = recommendation(df)
    assert text.startswith("Deploy `lora-r16`") and "gpt-4o-5shot" not in text
    assert "`gpt-4o-mini-0shot`" in text  # the best complete prompted baseline is the comparator
    files = write_report(df, tmp_path / "out")
    md = files.markdown.read_text()
    assert "| coverage |" in md.splitlines()[md.splitlines().index("## Leaderboard") + 4]
    assert "| 50% |" in md and "| 100% |" in md
    assert (
        "- gpt-4o-5shot: answered only 50% of 200 examples (100 example(s) not predicted (request budget of "
        "100 spent)); its numbers are not comparable with complete runs" in md
    )
    assert pd.read_csv(files.csv).set_index("name").loc["gpt-4o-5shot", "coverage"] == 0.5


def test_complete_runs_show_no_coverage_column(board: pd.DataFrame) -> None:
    assert (board["coverage"] == 1.0).all()
    assert "coverage" not in display_table(board).columns


def _error_records(tmp_path: Path, fixture_runs) -> Path:
    """Three predictors ranked on an error (lower is better) no built-in list knows the direction of."""
    base = fixture_runs.records()
    specs = {  # name -> (source record, error, examples/s: cost falls as throughput rises)
        "precise": ("lora-r16", 0.10, 10.0),
        "cheap": ("lora-r4", 0.30, 50.0),
        "worse-and-dearer": ("smol-0shot", 0.50, 20.0),
    }
    for name, (src, err, eps) in specs.items():
        rec = {**base[src], "name": name, "run_id": name, "primary_metric": "mean_abs_error",
               "higher_is_better": False, "metrics": {"mean_abs_error": err},
               "throughput": {"examples_per_s": eps}}  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(rec))
    return tmp_path


def test_a_lower_is_better_primary_metric_ranks_ascending(tmp_path: Path, fixture_runs) -> None:
    records = collect_records([_error_records(tmp_path, fixture_runs)])
    df = leaderboard(records, primary_metric="mean_abs_error", weights={"quality": 1.0})
    assert list(df["name"]) == ["precise", "cheap", "worse-and-dearer"]
    assert list(df["score"]) == pytest.approx([1.0, 0.5, 0.0])
    assert set(df.loc[df["pareto"], "name"]) == {"precise", "cheap"}  # "worse-and-dearer" is dominated
    assert df.attrs["higher_is_better"] is False
    text = recommendation(df)
    assert text.startswith("Deploy `precise` (fine-tuned HuggingFaceTB/SmolLM2-135M): mean_abs_error (lower is "
                           "better) 0.10 vs 0.50 for the best prompted baseline (`worse-and-dearer`)")  # fmt: skip
    md = write_report(df, tmp_path / "out").markdown.read_text()
    assert "Pareto front (lower mean_abs_error is better)" in md


def _sweep_records(tmp_path: Path, fixture_runs) -> Path:
    """A LoRA-rank sweep: two jobs, each writing a zero-shot and a fine-tuned record of the same names."""
    base = fixture_runs.records()
    for job, r in enumerate((4, 8)):
        overrides = ["model=tiny", f"adapter.r={r}", "seed=1", "hydra.job.chdir=false"]
        for name, src in (("tiny-zero-shot", "smol-0shot"), ("tiny-lora", "lora-r4")):
            rec = {**base[src], "name": name, "run_id": f"job{job}", "overrides": overrides}
            path = tmp_path / str(job) / f"results_{src}.json"
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps(rec))
    # A baseline added to the first job later: its own overrides are no sweep dimension.
    extra = {**base["gpt-4o-mini-0shot"], "overrides": ["run_dir=/somewhere", "k_shot_baselines.k_shot=null"]}
    (tmp_path / "0" / "results_api.json").write_text(json.dumps(extra))
    return tmp_path


def test_sweep_overrides_name_the_rows_and_become_columns(tmp_path: Path, fixture_runs) -> None:
    records = collect_records([_sweep_records(tmp_path, fixture_runs)])
    assert sorted(r.name for r in records) == [
        "gpt-4o-mini-0shot",
        "tiny-lora [adapter.r=4]",
        "tiny-lora [adapter.r=8]",
        "tiny-zero-shot [adapter.r=4]",
        "tiny-zero-shot [adapter.r=8]",
    ]
    df = leaderboard(records)
    assert df.attrs["swept"] == ["adapter.r"]
    assert not {"seed", "run_dir", "k_shot_baselines.k_shot"} & set(df.columns)
    by_name = df.set_index("name")
    assert by_name.loc["tiny-lora [adapter.r=8]", "adapter.r"] == "8"
    assert pd.isna(by_name.loc["gpt-4o-mini-0shot", "adapter.r"])
    assert by_name.loc["gpt-4o-mini-0shot", "model"] == "gpt-4o-mini"  # `model=tiny` overwrites nothing
    files = write_report(df, tmp_path / "out")
    csv = pd.read_csv(files.csv).set_index("name")
    assert csv.loc["tiny-lora [adapter.r=4]", "adapter.r"] == 4
    table = display_table(df)
    assert list(table.columns[:4]) == ["#", "name", "predictor", "adapter.r"]
    assert (
        "| tiny-lora [adapter.r=8] | fine-tuned HuggingFaceTB/SmolLM2-135M | 8 |"
        in files.markdown.read_text()
    )


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
    # two trade-off plots, the reliability diagram (every report has one) and the extra section's PNG
    assert html.count('src="data:image/png;base64,') == 4
    assert "](reliability.png)" in md
    assert "<table>" in html and "<td>lora-r16</td>" in html and "<strong>helps</strong>" in html
    assert 'src="quality_vs_cost.png"' not in html  # nothing left pointing at a side file
    assert pd.read_csv(files.csv)["name"].iloc[0] == "lora-r16"


def test_recommendation_when_a_prompted_model_wins(multirun_dir: Path) -> None:
    records = [r for r in collect_records([multirun_dir]) if r.predictor["kind"] == "api"]
    df = leaderboard(records, weights={"quality": 1.0})
    text = recommendation(df)
    assert text.startswith("Deploy `gpt-4o-5shot` (5-shot gpt-4o via API): accuracy 0.80 vs 0.62")
    assert "45× more expensive than gpt-4o-mini" in text  # 3.95 / 0.087 = 45.4


def test_a_report_over_a_single_record_recommends_it(multirun_dir: Path) -> None:
    (only,) = [r for r in collect_records([multirun_dir]) if r.name == "lora-r16"]
    text = recommendation(leaderboard([only], load_pricing(), primary_metric="accuracy"))
    assert text.startswith("Deploy `lora-r16`") and "accuracy 0.91" in text
