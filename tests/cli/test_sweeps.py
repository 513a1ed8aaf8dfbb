"""Sweeps through the real CLI: Optuna trials run as separate jobs and the best parameters are written; a job
that fails with a user error is recorded and the other jobs still run."""

from __future__ import annotations

import json

import yaml

from slmforge.records import read_results

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


def test_a_failed_sweep_job_is_recorded_and_the_others_still_run(tmp_path):
    # A config mistake in the second job (model.dtype=float99) is a user error: the tiny job before it must
    # finish, and the sweep must end with code 2. (A model this machine cannot reach is a skip, not a failure:
    # tests/cli/test_size_sweep.py.)
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "slmforge-train", "-m", "model=tiny", "model.dtype=float32,float99", "debug=fast", "eval.zero_shot=false",
        "logger=none", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: model.dtype=float99"), proc.stderr[-3000:]
    ok = sweep / "0_tiny-lora-tickets_debug=fast,eval.zero_shot=False,logger=none,model.dtype=float32"
    assert read_results(ok / "predictors" / "finetuned").n == 8
    assert (ok / "metrics.json").is_file() and not (ok / "failed.json").exists()
    [failed] = [p.parent for p in sweep.glob("*/failed.json")]
    assert (
        failed.name == "1_tiny-lora-tickets_debug=fast,eval.zero_shot=False,logger=none,model.dtype=float99"
    )
    info = json.loads((failed / "failed.json").read_text())
    assert info["error_type"] == "ModelLoadError"
    assert info["error"].startswith("model.dtype=float99")
    assert info["overrides"] == ["model=tiny", "model.dtype=float99", "debug=fast", "eval.zero_shot=False",
                                 "logger=none"]  # fmt: skip
    # The summary at the end names the failed job and its error.
    assert f"sweep: 1 job(s) failed in {sweep}" in proc.stderr
    assert f"  {failed.name}: model.dtype=float99" in proc.stderr
