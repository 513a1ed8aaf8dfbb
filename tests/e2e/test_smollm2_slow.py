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


def _oos_recall_at_in_scope_coverage(rows: list[dict], oos: str, coverage: float) -> float:
    """Out-of-scope recall at the confidence threshold that still answers ``coverage`` of the in-scope rows:
    the same operating point for two models whatever their own thresholds chose."""
    in_scope = sorted((r["confidence"] for r in rows if r["gold"] != oos), reverse=True)
    threshold = in_scope[max(0, int(len(in_scope) * coverage) - 1)]
    gold_oos = [r for r in rows if r["gold"] == oos]
    return sum(r["confidence"] < threshold for r in gold_oos) / len(gold_oos)


@pytest.mark.skipif(
    not (SHARED_DATA / "banking77").is_dir(),
    reason="needs ../shared/data/banking77 (or SLMFORGE_SHARED_DATA)",
)
def test_banking77_out_of_scope_recipe_catches_more_held_out_traffic_than_the_base_model(tmp_path):
    # experiment=banking77_oos on a slice: 8 rows per kept intent (67 x 8 = 536), 2 epochs; the test split
    # capped at 2 per intent (154 rows, 20 of them from the 10 held-out intents, labelled out_of_scope).
    import json

    run = tmp_path / "run"
    proc = run_cli(
        "slmforge-train", "experiment=banking77_oos", f"paths.shared_data={SHARED_DATA}",
        "data.per_label_train=8", "train.lr=2e-3", "train.epochs=2", "data.max_validation_examples=67",
        "data.per_label_test=2", "eval.zero_shot=true", "eval.latency_probe_n=2",
        # a slice model is ~0.75 accurate: keep 60% of in-scope rows answered and right (the recipe asks 90%
        # of a full-data model)
        "task.abstain.target_accuracy=0.6", f"hydra.run.dir={run}", cwd=tmp_path, timeout=2400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    zero = read_results(run / "predictors/zero_shot")
    tuned = read_results(run / "predictors/finetuned")
    assert tuned.n == zero.n == 154 and tuned.metrics["n_out_of_scope"] == 20
    assert tuned.data["label_changes"]["holdout_labels"] == zero.data["label_changes"]["holdout_labels"]
    rows = {
        name: [
            json.loads(x) for x in (run / "predictors" / name / "predictions.jsonl").read_text().splitlines()
        ]
        for name in ("zero_shot", "finetuned")
    }
    at = {name: _oos_recall_at_in_scope_coverage(r, "out_of_scope", 0.9) for name, r in rows.items()}
    # At the same in-scope coverage, the fine-tuned model's confidence separates held-out intents better.
    assert at["finetuned"] > at["zero_shot"], (at, zero.metrics["oos_auroc"], tuned.metrics["oos_auroc"])
    assert tuned.metrics["oos_auroc"] > zero.metrics["oos_auroc"] + 0.05
    # and each model's own threshold (chosen on in-scope validation rows for the same in-scope accuracy):
    # the base model cannot afford to abstain, the fine-tuned one catches out-of-scope rows
    assert tuned.metrics["oos_recall"] > zero.metrics["oos_recall"], (zero.metrics, tuned.metrics)
    assert tuned.metrics["oos_recall"] > 0.2
    assert tuned.metrics["in_scope_accuracy"] > zero.metrics["in_scope_accuracy"]
