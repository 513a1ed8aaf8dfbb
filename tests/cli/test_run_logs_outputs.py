"""What a run leaves to read: its log file (stage timings, progress lines when the output is not a terminal)
and every command's folders under ``SLMFORGE_OUTPUTS``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from slmforge.records import read_results

from clihelp import FAST, run_cli

_LINE = re.compile(r"^\[[^\]]+\]\[(?P<name>[^\]]+)\]\[(?P<level>[A-Z]+)\] (?P<msg>.*)$")
_PROGRESS = re.compile(
    r"^train step (?P<k>\d+)/4 \(\d+%\), loss \d+\.\d{4}, [\d,]+ tokens/s, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$"
)


@pytest.fixture(scope="module")
def train_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """A tiny training run with SLMFORGE_OUTPUTS set: (outputs folder, run folder, the process)."""
    work = tmp_path_factory.mktemp("work")
    out = work / "out"
    proc = run_cli("slmforge-train", *FAST, "logger=none", cwd=work, env={"SLMFORGE_OUTPUTS": str(out)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = out.glob("train/runs/*_tiny-lora-tickets")  # SLMFORGE_OUTPUTS decides where the run lands
    assert sorted(p.name for p in work.iterdir()) == ["out"]
    return out, run, proc


def test_train_log_has_stage_timings_and_progress_lines(
    train_run: tuple[Path, Path, subprocess.CompletedProcess],
) -> None:
    _, run, proc = train_run
    log = (run / "train.log").read_text()
    lines = [m for m in map(_LINE.match, log.splitlines()) if m]
    assert len(lines) == len(log.splitlines())  # every line is a formatted log record

    messages = [m["msg"] for m in lines]
    for stage in (
        "data", "model tiny", "evaluate zero_shot on test (8 rows)", "fit (32 train rows)",
        "evaluate finetuned on test (8 rows)",
    ):  # fmt: skip
        assert f"{stage} ..." in messages
        assert any(re.fullmatch(rf"{re.escape(stage)} done in \d+\.\d s", msg) for msg in messages), stage
    # Not a terminal (progress_bar: auto): no bar, a progress line per step of 4 (each 10% of the run rounds
    # up to a step), the last with nothing left to wait for.
    progress = [p for p in map(_PROGRESS.match, messages) if p]
    assert [int(p["k"]) for p in progress] == [1, 2, 3, 4]
    assert progress[-1].group(0).endswith("ETA 0:00:00") and "(100%)" in progress[-1].group(0)
    fit_start, fit_end = messages.index("fit (32 train rows) ..."), messages.index(progress[-1].group(0))
    assert fit_start < fit_end  # within the fit stage
    assert all(p.group(0) in proc.stdout for p in progress)  # the console shows them too
    assert "Epoch 0" not in proc.stdout + proc.stderr  # and no progress bar (Lightning's label each epoch)
    # slmforge's lines at INFO; any other library's only from WARNING
    assert all(m["name"].startswith("slmforge") or m["level"] != "INFO" for m in lines)


def test_progress_bar_value_is_checked_before_any_compute(tmp_path: Path) -> None:
    proc = run_cli(
        "slmforge-train", *FAST, "progress_bar=sometimes", f"hydra.run.dir={tmp_path / 'r'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "progress_bar='sometimes' is not one of auto, true, false" in proc.stderr
    assert "data ..." not in proc.stdout


def test_outputs_env_decides_where_evaluate_and_report_write(
    train_run: tuple[Path, Path, subprocess.CompletedProcess], tmp_path: Path
) -> None:
    out, run, _ = train_run
    env = {"SLMFORGE_OUTPUTS": str(out)}
    proc = run_cli("slmforge-evaluate", f"run_dir={run}", "debug=fast", "logger=none", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ev,) = out.glob("evaluate/runs/*_tiny-tickets-test-finetuned")
    assert read_results(ev).n == 8 and (ev / "evaluate.log").is_file()

    proc = run_cli("slmforge-report", f"runs=[{run},{ev}]", "wandb.enabled=false", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (report,) = out.glob("report/*/*/report.md")
    assert f"report: {report}" in proc.stdout
    assert all(name in report.read_text() for name in ("tiny-zero-shot", "tiny-lora"))
    assert not any(tmp_path.iterdir())  # nothing in the folder the commands ran from


@pytest.mark.parametrize(
    ("cmd", "package", "where"),
    [
        ("report", "hydra.run", "report/"), ("report", "hydra.sweep", "report/multiruns/"),
        ("route", "hydra.run", "route/"), ("route", "hydra.sweep", "route/multiruns/"),
        ("serve", "hydra.run", "serve/"),
    ],
)  # fmt: skip
def test_outputs_env_decides_the_folders_of_the_other_commands(
    cmd: str, package: str, where: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        f"slmforge-{cmd}", "--cfg", "hydra", "--package", package, "--resolve", cwd=tmp_path,
        env={"SLMFORGE_OUTPUTS": str(out)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("dir: "))
    assert line.removeprefix("dir: ").startswith(f"{out}/{where}")
