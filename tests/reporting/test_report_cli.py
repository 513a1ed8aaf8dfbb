"""The `slmforge-report` console script end to end, in a subprocess (as a user runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(
    not (REPO / "conf" / "train.yaml").exists(), reason="conf/train.yaml (config_dir marker) not present yet"
)


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("slmforge-report")
    found = str(exe) if exe.exists() else shutil.which("slmforge-report")
    assert found, "slmforge-report is not installed; run `pip install -e .`"
    return [found]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    return subprocess.run(_cli() + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cli_writes_report_and_logs_wandb_offline(multirun_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "report_out"
    proc = _run([f"runs=[{multirun_dir}]", f"output_dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for name in (
        "report.md",
        "report.html",
        "leaderboard.csv",
        "quality_vs_cost.png",
        "quality_vs_latency.png",
    ):
        assert (out / name).is_file(), name
    assert f"report: {out / 'report.html'}" in proc.stdout
    assert "recommendation: Deploy `lora-r16`" in proc.stdout
    assert "wandb:" in proc.stdout and "offline-run" in proc.stdout
    # The summary run lives with the report, not in the directory the command ran from.
    assert f"wandb:  {out / 'wandb'}" in proc.stdout
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert 'src="data:image/png;base64,' in (out / "report.html").read_text()


def test_cli_missing_runs_path_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_multirun"
    proc = _run([f"runs=[{missing}]", "wandb.enabled=false"], tmp_path)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "error:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_without_runs_says_how_to_pass_them(tmp_path: Path) -> None:
    proc = _run(["wandb.enabled=false"], tmp_path)
    assert proc.returncode != 0
    assert "runs=[path/to/multirun]" in proc.stderr


def test_cli_prices_an_unknown_api_model_as_unknown(multirun_dir: Path, tmp_path: Path) -> None:
    path = multirun_dir / "1" / "results.json"
    path.write_text(path.read_text().replace('"gpt-4o"', '"gpt-9-ultra"'))
    out = tmp_path / "report_out"
    proc = _run([f"runs=[{multirun_dir}]", f"output_dir={out}", "wandb.enabled=false"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    board = pd.read_csv(out / "leaderboard.csv").set_index("name")
    assert board.loc["gpt-4o-5shot", "model"] == "gpt-9-ultra"
    assert pd.isna(board.loc["gpt-4o-5shot", "cost_per_1k_usd"]) and not board.loc["gpt-4o-5shot", "pareto"]
    assert board.loc["gpt-4o-5shot", "priced_as"] == "unknown"
    warnings = (out / "report.md").read_text().split("## Warnings", 1)[1]
    assert (
        "- gpt-4o-5shot: cost unknown, so it is off the Pareto front (no API price for model 'gpt-9-ultra'"
        in warnings
    )
