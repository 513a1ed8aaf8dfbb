"""scripts/learning_curve.sh end to end on the tiny model: one command trains every (size, seed) job into one
sweep folder, writes the report over it plus any API baseline, and says where the report is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from slmforge.reporting.collect import collect_records
from slmforge.reporting.learning_curve import break_even_section, learning_curve

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "learning_curve.sh"


def _api_baseline(folder: Path) -> Path:
    """A hand-written API record on the same 8 test rows (accuracy 0: every fine-tuned run matches it)."""
    folder.mkdir(parents=True)
    record = {
        "run_id": "api0", "name": "gpt-4o-mini-0shot", "task": "classification", "split": "test", "n": 8,
        "predictor": {"kind": "api", "method": "zero_shot", "model": "gpt-4o-mini"},
        "data": {"name": "tickets", "sizes": {"test": 8}}, "metrics": {"accuracy": 0.0},
        "tokens": {"prompt_mean": 500, "completion_mean": 20}, "throughput": {"examples_per_s": 2.0},
    }  # fmt: skip
    (folder / "results.json").write_text(json.dumps(record))
    return folder


def test_script_trains_each_size_and_reports_over_sweep_and_baseline(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    baseline = _api_baseline(tmp_path / "baseline")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        "MODELS": "tiny",
        "SIZES": "2,null",
        "SWEEP_DIR": str(sweep),
        "BASELINES": str(baseline),
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), "debug=fast", "logger=csv", "eval.zero_shot=false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = sweep / "report" / "report.md"
    assert proc.stdout.strip().splitlines()[-1] == f"learning-curve report: {report}"
    assert report.is_file()
    assert "gpt-4o-mini-0shot" in report.read_text()  # the baseline is in the report's runs

    records = collect_records([sweep, baseline])
    # per_label_train=2 over 8 labels = 16 rows; null = every row of the fast data's 32.
    points, refs = learning_curve(records)
    assert [(p.series, p.train_examples) for p in points] == [("tiny", 16), ("tiny", 32)]
    assert [r.label for r in refs] == ["gpt-4o-mini zero-shot (API)"]
    _, body, _ = break_even_section(records, None, tmp_path / "be")
    assert body.count("| gpt-4o-mini-0shot |") == 2
