"""Golden loss values: the tiny model, a fixed seed, four optimizer steps through the real command.

A silent change in prompt masking, packing, the shared prefix, loss normalisation or the optimizer shows up
here as a number that moved. The values are the ones printed by the run this test was written from (CPU,
fp32); if a deliberate change moves them, re-pin them and say why in the commit.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from clihelp import FAST, run_cli

GOLDEN_LOSSES = [10.8618, 10.7638, 10.8018, 10.7081]  # re-pinned: default label smoothing 0.1, r 8, no warm-up


def test_tiny_run_losses_are_pinned(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "logger=csv", "eval.zero_shot=false", "eval.validation_predictions=false",
        f"hydra.run.dir={run_dir}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((run_dir / "csv/metrics.csv").open()))
    losses = [float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")]
    assert losses == pytest.approx(GOLDEN_LOSSES, abs=1e-4)
