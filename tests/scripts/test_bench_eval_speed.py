"""The classification-evaluation benchmark runs end to end on the tiny model: the article's recipe in both
precisions, every variant's examples/s, and the trie search agreeing with float32 exact scoring on every
example (exactness is what the benchmark's speed claims rest on)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from slmforge.data.generators.tickets import generate

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_eval_speed.py"


def test_tiny_run_prints_every_variant_and_the_search_is_exact(tmp_path: Path) -> None:
    rows = generate(40, seed=0)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "tiny", "--data", str(tmp_path), "--n", "6",
         "--max-new-tokens", "4", "--article-prompt", "--variants", "trie,scoring_fp32,trie_greedy"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^article  per-example generate\(256\), float32: [\d.]+ ex/s", proc.stdout, re.M)
    rates = dict(re.findall(r"^slmforge (\w+)\s+float32\s*:\s+([\d.]+) ex/s", proc.stdout, re.M))
    assert set(rates) == {"trie", "scoring_fp32", "trie_greedy"}, proc.stdout
    assert "trie agrees with exact scoring (scoring_fp32) on 6/6 examples" in proc.stdout

    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", "tiny", "--data", str(tmp_path), "--n", "4", "--no-article",
         "--dtype", "bfloat16", "--variants", "scoring_fp32,trie"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "article" not in proc.stdout.replace("--no-article", "")
    assert re.search(r"^slmforge trie\s+bfloat16:\s+[\d.]+ ex/s", proc.stdout, re.M), proc.stdout
