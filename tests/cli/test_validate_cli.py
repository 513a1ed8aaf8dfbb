"""slmforge-validate, and the same checks as slmforge-train's first stage, through the real console scripts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmforge.records import read_results

from clihelp import FAST, run_cli

# 5 training rows: t2 repeats t1 (case and spacing aside), t3/t4 are one text with two labels; test = train.
TRAIN = [
    {"id": "t1", "text": "My invoice is wrong", "label": "billing"},
    {"id": "t2", "text": "my  invoice is WRONG ", "label": "billing"},
    {"id": "t3", "text": "Cannot log in", "label": "account"},
    {"id": "t4", "text": "Cannot log in", "label": "technical"},
    {"id": "t5", "text": "App crashes on start", "label": "technical"},
]
VALIDATION = [
    {"id": "v1", "text": "Where is my refund", "label": "billing"},
    {"id": "v2", "text": "The screen stays black", "label": "technical"},
    {"id": "v3", "text": "Reset my password please", "label": "account"},
]
FAILED = "data validation failed: 7 errors (min_size, duplicates, conflicting_labels, leakage_exact)"


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def bad_data(tmp_path: Path) -> list[str]:
    return [
        "data=jsonl",
        f"data.train_path={_write(tmp_path / 'train.jsonl', TRAIN)}",
        f"data.validation_path={_write(tmp_path / 'validation.jsonl', VALIDATION)}",
        f"data.test_path={_write(tmp_path / 'test.jsonl', TRAIN)}",
    ]


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_validate_strict_fails_with_one_error_line_and_the_report(
    tmp_path: Path, bad_data: list[str]
) -> None:
    out = tmp_path / "v"
    proc = run_cli(
        "slmforge-validate", *bad_data, "model=tiny", "logger=none", "validation=strict", f"hydra.run.dir={out}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [f"error: {FAILED}; see {out / 'validation.md'} or set validation=warn"]
    report = json.loads((out / "validation.json").read_text())
    assert report["passed"] is False and report["errors"] == 7 and report["warnings"] == 0
    assert report["checks"]["truncation"] == "ok"  # the tiny model's tokenizer was loaded and used
    rows = {f["check"]: [] for f in report["findings"]}
    for f in report["findings"]:
        rows[f["check"]] += [f"{r['split']}:{r['id']}" for r in f["rows"]]
    assert set(rows["duplicates"]) == {"train:t1", "train:t2", "train:t3", "train:t4", "test:t1", "test:t2",
                                       "test:t3", "test:t4"}  # fmt: skip
    assert {"train:t3", "train:t4"} <= set(rows["conflicting_labels"])
    assert {"train:t5", "test:t5"} <= set(rows["leakage_exact"])
    md = (out / "validation.md").read_text()
    assert "| leakage_exact | error | train<->test: 3 text(s) are in both (100.0% of test's rows) |" in md
    assert "conflicting_labels" in proc.stdout and "FAILED" in proc.stdout  # the table on the console


def test_validate_warn_passes_and_prints_the_warnings(tmp_path: Path, bad_data: list[str]) -> None:
    out = tmp_path / "v"
    proc = run_cli(
        "slmforge-validate", *bad_data, "model=tiny", "logger=none", f"hydra.run.dir={out}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not _errors(proc.stderr) and "Traceback" not in proc.stderr
    assert "data validation passed: 0 errors, 7 warnings" in proc.stdout
    assert proc.stdout.count(" warn ") >= 7 and "leakage_exact" in proc.stdout
    assert json.loads((out / "validation.json").read_text())["warnings"] == 7


def test_validate_names_a_bad_severity(tmp_path: Path) -> None:
    proc = run_cli(
        "slmforge-validate", "model=tiny", "validation.duplicates.severity=loud", f"hydra.run.dir={tmp_path / 'v'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [
        "error: validation.duplicates.severity=loud is not one of ['error', 'warn', 'off']"
    ]


def test_train_strict_stops_before_training(tmp_path: Path, bad_data: list[str]) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, *bad_data, "logger=none", "validation=strict", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert _errors(proc.stderr) == [
        f"error: {FAILED}; see {run_dir / 'validation.md'} or set validation=warn"
    ]
    assert not (run_dir / "adapter").exists() and not (run_dir / "predictors").exists()
    assert not (run_dir / "checkpoints").exists()
    assert json.loads((run_dir / "validation.json").read_text())["errors"] == 7


def test_train_with_the_default_warns_trains_and_records_the_data_version(
    tmp_path: Path, bad_data: list[str]
) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", *FAST, *bad_data, "logger=none", "eval.zero_shot=false", f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    warned = [line for line in proc.stdout.splitlines() if "[WARNING] data validation: " in line]
    assert len(warned) == 7 and any("leakage_exact: train<->test: 3 text(s)" in w for w in warned)
    report = json.loads((run_dir / "validation.json").read_text())
    assert report["passed"] is True and report["warnings"] == 7
    rec = read_results(run_dir / "predictors/finetuned")
    fingerprints = rec.data["fingerprints"]
    assert set(fingerprints) == {"train", "validation", "test"}
    assert fingerprints == report["fingerprints"] and fingerprints["train"] == fingerprints["test"]
    assert json.loads((run_dir / "metrics.json").read_text())["data"]["fingerprints"] == fingerprints
