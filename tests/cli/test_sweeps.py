"""Optuna search through the real CLI: trials run as separate jobs and the best parameters are written."""

from __future__ import annotations

import yaml

from clihelp import FAST, run_cli


def test_optuna_search_runs_trials_and_reports_best(tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_cli(
        "slmforge-train", "-m", "hparams_search=lora_optuna", *FAST, "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2", "eval.zero_shot=false", "logger=none",
        f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(best["best_params"]) == {
        "train.lr",
        "adapter.r",
        "adapter.alpha",
        "adapter.dropout",
        "train.epochs",
    }
    assert 0.0 <= best["best_value"] <= 1.0
    trials = [p for p in sweep.iterdir() if (p / "metrics.json").exists()]
    assert len(trials) == 2
