"""slmforge-compare over two seeds on the tiny model: one run per seed, one report with 95% CIs and marks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from slmforge.records import read_results

from clihelp import FAST, run_cli

PREDICTORS = ("zero_shot", "k_shot", "finetuned", "zero_cal")
# A zero-shot baseline with contextual calibration beside the raw one: the report says which scoring each used.
CALIBRATED = "+k_shot_baselines.zero_cal={k: 0, selection: random, batch_size: 8, scoring: calibrated}"


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("compare_seeds")
    proc = run_cli(
        "slmforge-compare", *FAST, "seeds=[0,1]", CALIBRATED, "logger=csv", "report.wandb.enabled=false",
        f"hydra.run.dir={root / 'run'}", cwd=root,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "run", proc.stdout


def test_each_seed_trains_and_evaluates_its_own_baselines(two_seeds: tuple[Path, str]) -> None:
    run, _ = two_seeds
    for seed in (0, 1):
        for name in PREDICTORS:
            rec = read_results(run / f"seed_{seed}" / "predictors" / name)
            assert rec.seed == seed and rec.n == 8
        assert (run / f"seed_{seed}" / "adapter").is_dir()
    assert not (run / "predictors").exists()  # nothing evaluated outside the seed folders


def test_the_report_aggregates_seeds_with_intervals_and_significance(two_seeds: tuple[Path, str]) -> None:
    run, stdout = two_seeds
    board = pd.read_csv(run / "report" / "leaderboard.csv")
    assert len(board) == 4 and (board["n_seeds"] == 2).all()
    scoring = dict(zip(board["name"], board["scoring"], strict=True))
    assert scoring["tiny-zero-shot-calibrated"] == "calibrated" and scoring["tiny-zero-shot"] == "raw"
    assert set(board.loc[board["name"] == "tiny-zero-shot-calibrated", "method"]) == {"zero_shot"} and set(
        board["seeds"]
    ) == {"0,1"}
    assert board["name"].str.contains(r"\[|#").sum() == 0  # one name per predictor, no seed suffixes
    assert (board["ci_low"] <= board["accuracy"] + 1e-12).all()
    assert (board["accuracy"] <= board["ci_high"] + 1e-12).all()
    assert set(board["ci_method"]) == {"two-level bootstrap (seeds, then test rows within each seed)"}
    assert (board["vs_best"] == "best").sum() == 1
    others = board[board["vs_best"] != "best"]
    # the mark agrees with the interval: n.s. exactly when the paired 95% CI of the difference contains 0
    contains_zero = (others["diff_low"] <= 0) & (others["diff_high"] >= 0)
    assert (others["vs_best"].str.endswith(" n.s.") == contains_zero).all()
    assert (others["tied_with_best"] == contains_zero).all()
    assert others["mcnemar_p"].between(0, 1).all()
    # 8 test rows per seed: the tiny models cannot be told apart, and the report says so
    assert contains_zero.any()
    md = (run / "report" / "report.md").read_text()
    assert "`tiny-zero-shot-calibrated`: calibrated" in md and "`tiny-zero-shot`: raw" in md
    assert "| 95% CI | vs best | McNemar p | seeds |" in md and " n.s. |" in md and "## Statistics" in md
    for png in ("quality_vs_cost", "reliability", "routing_curve", "confusion_matrix"):
        assert f"]({png}.png)" in md and (run / "report" / f"{png}.png").stat().st_size > 5000
    assert "recommendation: No significant difference in accuracy between" in stdout


def test_slmforge_report_over_the_seed_folders_gives_the_same_leaderboard(
    two_seeds: tuple[Path, str], tmp_path: Path
) -> None:
    run, _ = two_seeds
    proc = run_cli("slmforge-report", f"runs=[{run}]", f"output_dir={tmp_path / 'rep'}", "wandb.enabled=false",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = pd.read_csv(tmp_path / "rep" / "leaderboard.csv")
    first = pd.read_csv(run / "report" / "leaderboard.csv")
    cols = ["name", "accuracy", "n_seeds", "ci_low", "ci_high", "diff", "diff_low", "diff_high", "vs_best"]
    pd.testing.assert_frame_equal(
        again[cols].sort_values("name").reset_index(drop=True),
        first[cols].sort_values("name").reset_index(drop=True),
    )


def test_a_seed_multirun_reports_like_seeds_in_one_command(
    two_seeds: tuple[Path, str], tmp_path: Path
) -> None:
    """`slmforge-compare -m seed=0,1` then `slmforge-report runs=[<multirun>]`: the same rows, same numbers."""
    run, _ = two_seeds
    sweep = tmp_path / "multirun"
    proc = run_cli("slmforge-compare", "-m", *FAST, "seed=0,1", CALIBRATED, "logger=csv", "report.wandb.enabled=false",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli("slmforge-report", f"runs=[{sweep}]", f"output_dir={tmp_path / 'rep'}", "wandb.enabled=false",
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    swept = pd.read_csv(tmp_path / "rep" / "leaderboard.csv")
    assert "seed" not in swept.columns and (swept["n_seeds"] == 2).all()
    first = pd.read_csv(run / "report" / "leaderboard.csv")
    cols = [
        "name",
        "accuracy",
        "n_seeds",
        "seeds",
        "ci_low",
        "ci_high",
        "diff_low",
        "diff_high",
        "tied_with_best",
    ]
    pd.testing.assert_frame_equal(
        swept[cols].sort_values("name").reset_index(drop=True),
        first[cols].sort_values("name").reset_index(drop=True),
    )


def test_bad_seeds_are_one_error_line(tmp_path: Path) -> None:
    proc = run_cli(
        "slmforge-compare", *FAST, "seeds=[0,0]", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: seeds=[0, 0]: give distinct integer seeds")
