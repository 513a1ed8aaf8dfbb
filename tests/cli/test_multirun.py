"""A Hydra multirun gives one run directory and one W&B run per job, with that job's config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from slmforge.records import read_results

from clihelp import FAST, run_cli


def _read_wandb_run(run_dir: Path) -> dict:
    """Read an offline run back from its .wandb file (offline runs write no wandb-summary.json)."""
    wandb_cli = Path(sys.executable).parent / "wandb"
    out = subprocess.run(
        [str(wandb_cli), "leet", "inspect", "--summary", "--json", str(run_dir)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_two_job_multirun_gives_two_wandb_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "slmforge-train", "-m", *FAST, "adapter.r=4,8", "eval.zero_shot=false", f"hydra.sweep.dir={sweep}",
        cwd=tmp_path, env={"WANDB_DIR": str(tmp_path / "wandb_unused")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert len(jobs) == 2
    seen = {}
    for job in jobs:
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, f"{job}: expected exactly one W&B run, got {runs}"
        run = runs[0]
        assert list(run.glob("*.wandb")), "the offline run file is missing"
        wb = _read_wandb_run(run)
        assert wb["state"] == "finished"
        seen[wb["run_id"]] = wb["config"]["adapter"]["r"]
        assert wb["config"]["run_name"] == "tiny-lora-tickets"
        # The run's logged test metric is the one in the job's local results record.
        local = read_results(job / "predictors" / "finetuned")
        assert wb["summary"]["finetuned/test/accuracy"] == local.metrics["accuracy"]
    assert sorted(seen.values()) == [4, 8]
    assert len(seen) == 2  # two distinct W&B runs
