"""End-to-end on the real SmolLM2-135M-Instruct (slow: minutes on 2 CPU cores; run with -m slow)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slmforge.records import read_results

from clihelp import run_cli

pytestmark = pytest.mark.slow


def test_finetuned_smollm2_beats_zero_shot_on_tickets(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", "data.sizes.train=192", "data.sizes.validation=32", "data.sizes.test=64",
        "eval.latency_probe_n=4", f"hydra.run.dir={run}", cwd=tmp_path, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    zero = read_results(run / "predictors/zero_shot").metrics
    tuned = read_results(run / "predictors/finetuned").metrics
    assert tuned["accuracy"] >= zero["accuracy"] + 0.2, (zero["accuracy"], tuned["accuracy"])
    assert tuned["macro_f1"] > zero["macro_f1"]


def test_finetuned_smollm2_beats_zero_shot_on_invoices(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", "experiment=invoices", "data.sizes.train=96", "data.sizes.validation=8",
        "data.sizes.test=24", "eval.latency_probe_n=2", "eval.validation_predictions=false",
        f"hydra.run.dir={run}", cwd=tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    zero = read_results(run / "predictors/zero_shot").metrics
    tuned = read_results(run / "predictors/finetuned").metrics
    assert tuned["field_micro_f1"] >= zero["field_micro_f1"] + 0.2, (zero, tuned)
    assert tuned["json_validity"] >= 0.9


SHARED_DATA = Path(
    os.environ.get("SLMFORGE_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)


@pytest.mark.skipif(
    not (SHARED_DATA / "banking77").is_dir(),
    reason="needs ../shared/data/banking77 (or SLMFORGE_SHARED_DATA)",
)
def test_banking77_recipe_beats_zero_shot_on_a_small_slice(tmp_path):
    # The banking77 recipe at learning-curve size (lr 2e-3 as for the curve points; 8 examples per intent
    # = 616 rows, 2 epochs). Zero-shot uses the same prompt (no label list) and the same exact trie search:
    # constrained to the 77 descriptive intent names, the base model already gets ~0.4 (measured 0.403 on
    # 77 rows), so the bar is a clear gain over that, on 154 test rows to keep the noise down.
    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", "experiment=banking77", f"paths.shared_data={SHARED_DATA}",
        "data.per_label_train=8", "train.lr=2e-3", "train.epochs=2", "data.max_validation_examples=16",
        "data.max_test_examples=154", "eval.zero_shot=true", "eval.latency_probe_n=2",
        "eval.validation_predictions=false", f"hydra.run.dir={run}", cwd=tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    zero = read_results(run / "predictors/zero_shot")
    tuned = read_results(run / "predictors/finetuned")
    assert tuned.n == zero.n == 154
    assert tuned.metrics["accuracy"] >= 0.5, tuned.metrics
    assert tuned.metrics["accuracy"] >= zero.metrics["accuracy"] + 0.15, (zero.metrics, tuned.metrics)
    assert tuned.predictor["decoding"] == "label_trie_exact"
    # The fine-tuned model is confident: its search runs far fewer nodes than the zero-shot model's.
    assert tuned.predictor["searched_nodes_mean"] < zero.predictor["searched_nodes_mean"]
