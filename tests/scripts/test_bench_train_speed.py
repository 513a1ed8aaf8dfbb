"""The training benchmark runs end to end on the tiny model (its GPU-only parts are checked on a GPU, see
BENCHMARKS.md): every variant prints its useful tokens/s and the ratio to the article's recipe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from slmforge.data.generators.tickets import generate

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_train_speed.py"


def test_tiny_run_prints_every_variant_and_its_ratio(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in generate(64, seed=0)))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "tiny", "--steps", "1", "--data", str(data),
         "--variants", "article,hf,slmforge", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rates = dict(re.findall(r"^(\w+)\s+useful tokens/s\s+([\d.]+)", proc.stdout, re.M))
    assert set(rates) == {"article", "hf", "slmforge"}, proc.stdout
    # Padding to 512 and training on it makes the article's recipe the slowest per useful token.
    assert float(rates["article"]) < float(rates["hf"])
    assert float(rates["article"]) < float(rates["slmforge"])
    assert re.search(r"^slmforge / hf = [\d.]+x$", proc.stdout, re.M)
