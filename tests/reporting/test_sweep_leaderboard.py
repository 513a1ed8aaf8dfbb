"""The sweep leaderboard: a hyperparameter sweep's configurations ranked on the validation split (never on
test), seeds averaged, and its report section (table, CSV, PNG, the winner's overrides)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from slmforge.config import config_dir
from slmforge.errors import ConfigError
from slmforge.records import ResultsRecord, write_results
from slmforge.reporting.sweep import (
    SWEEP_LEADERBOARD_TITLE,
    sweep_leaderboard,
    sweep_leaderboard_section,
    winner_overrides,
)


def _rec(
    overrides: list[str],
    val: float | None,
    test: float,
    seed: int = 0,
    metric: str = "accuracy",
    higher: bool = True,
    method: str = "finetuned",
    time_s: float | None = 60.0,
    run: str | None = None,
) -> ResultsRecord:
    """A fine-tuned record of one sweep job: ``test`` on the test split, ``val`` under metrics.validation."""
    metrics: dict = {metric: test, "n": 100}
    if val is not None:
        metrics["validation"] = {metric: val, "n": 40, "invalid_rate": 0.0}
    run_id = run or ("-".join(o.replace("=", "") for o in overrides) + f"-s{seed}")
    return ResultsRecord.from_dict({
        "run_id": run_id, "name": "tiny-lora", "task": "classification", "split": "test", "n": 100,
        "predictor": {"kind": "local", "method": method, "model": "tiny"},
        "data": {"name": "tickets", "sizes": {"train": 80, "validation": 40, "test": 100}},
        "metrics": metrics, "primary_metric": metric, "higher_is_better": higher, "seed": seed,
        "overrides": [*overrides, f"seed={seed}", "model=tiny"],
        "training": {"time_s": time_s, "train_rows": 80} if time_s is not None else {},
    })  # fmt: skip


def test_ranks_on_validation_not_test() -> None:
    # lr=0.01 is best on test (0.95) but worst on validation: it must rank last.
    recs = [
        _rec(["train.lr=0.01", "adapter.r=8"], val=0.70, test=0.95),
        _rec(["train.lr=0.002", "adapter.r=16"], val=0.90, test=0.85),
        _rec(["train.lr=0.002", "adapter.r=8"], val=0.80, test=0.80, time_s=None),
    ]
    board = sweep_leaderboard(recs)
    assert board is not None
    assert list(board.columns) == [
        "rank", "adapter.r", "train.lr", "validation_accuracy", "test_accuracy", "n_seeds", "n_validation",
        "training_time_s", "run",
    ]  # fmt: skip
    assert board["rank"].tolist() == [1, 2, 3]
    assert board[["train.lr", "adapter.r"]].values.tolist() == [
        ["0.002", "16"],
        ["0.002", "8"],
        ["0.01", "8"],
    ]
    assert board["validation_accuracy"].tolist() == [0.90, 0.80, 0.70]
    assert board["test_accuracy"].tolist() == [0.85, 0.80, 0.95]
    assert board["n_validation"].tolist() == [40, 40, 40]
    assert board["training_time_s"].iloc[0] == 60.0 and math.isnan(board["training_time_s"].iloc[1])
    assert board["run"].tolist() == ["train.lr0.002-adapter.r16-s0", "train.lr0.002-adapter.r8-s0",
                                     "train.lr0.01-adapter.r8-s0"]  # fmt: skip
    # The fragment keeps the order the overrides were typed in (not the sorted column order).
    assert winner_overrides(recs, board) == "train.lr=0.002 adapter.r=16"


def test_seeds_of_one_configuration_are_averaged() -> None:
    recs = [
        _rec(["adapter.r=8"], val=0.80, test=0.70, seed=0, time_s=100.0),
        _rec(["adapter.r=16"], val=0.76, test=0.75, seed=0),
        _rec(["adapter.r=8"], val=0.70, test=0.74, seed=1, time_s=200.0),
    ]
    board = sweep_leaderboard(recs)
    assert board is not None
    assert "seed" not in board.columns  # a repetition, not a swept setting
    # r=8: validation (0.80 + 0.70) / 2 = 0.75 < r=16's 0.76, so r=16 wins though r=8 had the best seed.
    assert board["adapter.r"].tolist() == ["16", "8"]
    assert board["n_seeds"].tolist() == [1, 2]
    r8 = board.iloc[1]
    assert r8["validation_accuracy"] == pytest.approx(0.75)
    assert r8["test_accuracy"] == pytest.approx(0.72)
    assert r8["training_time_s"] == pytest.approx(150.0)
    assert r8["run"] == "adapter.r8-s0, adapter.r8-s1"


def test_lower_is_better_metric_ranks_ascending_and_ties_keep_order() -> None:
    recs = [
        _rec(["train.lr=0.001"], val=2.5, test=2.4, metric="perplexity", higher=False),
        _rec(["train.lr=0.003"], val=1.9, test=2.0, metric="perplexity", higher=False),
        _rec(["train.lr=0.002"], val=2.5, test=2.1, metric="perplexity", higher=False),
    ]
    board = sweep_leaderboard(recs)
    assert board is not None
    assert board["train.lr"].tolist() == ["0.003", "0.001", "0.002"]  # the 2.5 tie keeps the order found
    assert board["validation_perplexity"].tolist() == [1.9, 2.5, 2.5]
    assert board["test_perplexity"].tolist() == [2.0, 2.4, 2.1]


def test_none_when_not_a_sweep_with_validation_metrics() -> None:
    # Nothing swept but the seed: repetitions of one configuration.
    assert sweep_leaderboard([_rec(["adapter.r=8"], 0.8, 0.8, seed=s) for s in (0, 1)]) is None
    # Swept, but no record carries validation metrics.
    assert sweep_leaderboard([_rec(["adapter.r=8"], None, 0.8), _rec(["adapter.r=16"], None, 0.9)]) is None
    # Only one fine-tuned record with validation metrics (the others are prompted baselines or lack it).
    one = [
        _rec(["adapter.r=8"], 0.8, 0.8),
        _rec(["adapter.r=16"], None, 0.9),
        _rec(["adapter.r=32"], 0.9, 0.6, method="zero_shot"),
    ]
    assert sweep_leaderboard(one) is None
    assert sweep_leaderboard([]) is None
    assert sweep_leaderboard_section(one, Path("unused")) is None


def test_mixed_primary_metrics_are_a_config_error_and_the_section_steps_aside(tmp_path: Path) -> None:
    recs = [_rec(["adapter.r=8"], 0.8, 0.8), _rec(["adapter.r=16"], 0.5, 0.5, metric="field_micro_f1")]
    with pytest.raises(ConfigError, match=r"different primary metrics.*accuracy.*field_micro_f1"):
        sweep_leaderboard(recs)
    assert sweep_leaderboard_section(recs, tmp_path) is None  # the rest of the report still stands
    assert not (tmp_path / "sweep_leaderboard.csv").exists()


def test_section_writes_csv_png_and_names_the_winner(tmp_path: Path) -> None:
    recs = [
        _rec(["train.lr=0.01", "+adapter.r=8"], val=0.70, test=0.95),
        _rec(["train.lr=0.002", "+adapter.r=16"], val=0.90, test=0.85, seed=0),
        _rec(["train.lr=0.002", "+adapter.r=16"], val=0.80, test=0.75, seed=1),
        _rec(["train.lr=0.0005", "+adapter.r=8"], val=0.60, test=0.55),
    ]
    out = tmp_path / "report"
    title, body, [png] = sweep_leaderboard_section(recs, out)
    assert title == SWEEP_LEADERBOARD_TITLE == "Sweep leaderboard (ranked on validation)"
    assert png == out / "sweep_leaderboard.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    csv = pd.read_csv(out / "sweep_leaderboard.csv")
    assert csv["rank"].tolist() == [1, 2, 3]
    assert csv["train.lr"].tolist() == [0.002, 0.01, 0.0005]
    assert csv["validation_accuracy"].tolist() == pytest.approx([0.85, 0.70, 0.60])
    assert csv["n_seeds"].tolist() == [2, 1, 1]
    assert "validation split" in body and "reference only" in body and "leak" in body
    assert "`sweep_leaderboard.csv`" in body
    # The winner's overrides as typed (`+` kept), copy-pasteable.
    assert "Winner on validation: `train.lr=0.002 +adapter.r=16`" in body
    # The table: rank, the swept keys (sorted), validation then test (reference) ...
    assert "| rank | adapter.r | train.lr | validation accuracy | test accuracy (reference) |" in body
    assert "| 1 | 16 | 0.002 | 0.85 | 0.80 | 2 | 40 | 1 min |" in body
    assert "| 2 | 8 | 0.01 | 0.70 | 0.95 | 1 | 40 | 1 min |" in body
    # ... and the test column's disagreement is reported, not acted on.
    assert "On test, rank 2 scores best (0.95 vs 0.80); do not switch to it" in body
    assert "Spearman rank correlation between validation and test: 0.50." in body


def test_section_lists_the_top_twenty(tmp_path: Path) -> None:
    recs = [_rec([f"train.lr={i / 1000:g}"], val=i / 100, test=0.5) for i in range(1, 26)]
    _, body, _ = sweep_leaderboard_section(recs, tmp_path)
    assert "| 1 | 0.025 | 0.25 |" in body and "| 20 | 0.006 | 0.06 |" in body and "| 21 |" not in body
    assert "Top 20 of 25; every configuration is in `sweep_leaderboard.csv`." in body
    assert len(pd.read_csv(tmp_path / "sweep_leaderboard.csv")) == 25


def test_report_command_includes_the_section(tmp_path: Path) -> None:
    from slmforge.cli.report import build_report

    sweep = tmp_path / "sweep"
    for i, (r, val, test) in enumerate([("8", 0.7, 0.9), ("16", 0.9, 0.8)]):
        write_results(sweep / str(i) / "predictors" / "finetuned", _rec([f"adapter.r={r}"], val, test))
    out = tmp_path / "report"
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="report", overrides=[f"runs=[{sweep}]", f"output_dir={out}", "wandb.enabled=false"]
        )
    files, _ = build_report(cfg)
    md = files.markdown.read_text()
    assert "Sweep leaderboard (ranked on validation)" in md
    assert "Winner on validation: `adapter.r=16`" in md
    assert (out / "sweep_leaderboard.csv").is_file() and (out / "sweep_leaderboard.png").is_file()
