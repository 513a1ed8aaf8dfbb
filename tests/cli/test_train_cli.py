"""slmforge-train / evaluate / rerun through the real console scripts on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from slmforge.records import read_predictions, read_results

from clihelp import FAST, run_cli


@pytest.fixture
def tiny_run(shared_run: Path) -> Path:
    return shared_run  # model=tiny debug=fast adapter.r=4 seed=3 (tests/cli/conftest.py)


def test_run_dir_holds_every_output(tiny_run):
    for rel in [
        ".hydra/config.yaml",
        "config_resolved.yaml",
        "metrics.json",
        "predictors/zero_shot/results.json",
        "predictors/zero_shot/predictions.jsonl",
        "predictors/finetuned/results.json",
        "predictors/finetuned/predictions.jsonl",
        "predictors/finetuned/predictions_validation.jsonl",
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "checkpoints/last.ckpt",
    ]:
        assert (tiny_run / rel).exists(), rel


def test_results_record_agrees_with_predictions(tiny_run):
    rec = read_results(tiny_run / "predictors/finetuned")
    rows = read_predictions(tiny_run / "predictors/finetuned")
    assert rec.n == len(rows) == 8
    assert rec.metrics["accuracy"] == pytest.approx(sum(r.correct for r in rows) / len(rows))
    assert rec.predictor["method"] == "finetuned" and rec.task == "classification"
    assert rec.training["steps"] == 4
    assert set(rec.latency_ms) == {"mean", "p50", "p95", "p99"}
    for r in rows:
        assert r.pred in r.label_probs and r.confidence == pytest.approx(max(r.label_probs.values()))


def test_adapter_loads_with_peft_and_reproduces_predictions(tiny_run):
    from omegaconf import OmegaConf
    from peft import PeftModel

    from slmforge.data.sources import load_splits
    from slmforge.modeling.loading import ModelSpec, load_model
    from slmforge.prediction.label_scoring import LabelScorer
    from slmforge.tasks.classification import ClassificationTask

    cfg = OmegaConf.load(tiny_run / "config_resolved.yaml")
    lm = load_model(ModelSpec(**OmegaConf.to_container(cfg.model)))
    model = PeftModel.from_pretrained(lm.model, str(tiny_run / "adapter"))
    splits = load_splits(OmegaConf.to_container(cfg.data))
    task_cfg = OmegaConf.to_container(cfg.task)
    task_cfg.pop("_target_")
    task = ClassificationTask(**task_cfg)
    task.setup(splits.train, {})
    preds = LabelScorer(model, lm.tokenizer, task).predict(splits.test)
    saved = read_predictions(tiny_run / "predictors/finetuned")
    assert [p.pred for p in preds] == [r.pred for r in saved]
    for p, r in zip(preds, saved, strict=True):
        assert p.confidence == pytest.approx(r.confidence, abs=1e-4)


def test_resume_from_checkpoint_continues_step_count(tiny_run, tmp_path):
    ckpt = torch.load(tiny_run / "checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4
    # Only trainable weights are checkpointed, not the frozen base model.
    assert all("lora_" in k for k in ckpt["state_dict"])
    proc = run_cli(
        "slmforge-train", *FAST, "adapter.r=4", "seed=3", f"hydra.run.dir={tmp_path / 'resumed'}", f"ckpt_path={tiny_run}",
        "train.max_steps=6", "train.epochs=2", "eval.zero_shot=false", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert metrics["training"]["steps"] == 6
    assert metrics["training"]["resumed_from"].endswith("last.ckpt")
    assert torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=False)["global_step"] == 6


def test_rerun_reproduces_test_metrics(tiny_run, tmp_path):
    proc = run_cli(
        "slmforge-rerun", str(tiny_run), cwd=tmp_path, env={"SLMFORGE_OUTPUTS": str(tmp_path / "out")}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The rerun has a folder of its own, never inside the original (a report over it would count both).
    assert not (tiny_run / "reruns").exists()
    reruns = sorted((tmp_path / "out" / "rerun" / "runs").iterdir())
    assert len(reruns) == 1 and reruns[0].name.endswith(tiny_run.name)
    assert f"outputs: {reruns[0]}" in proc.stdout
    new = read_results(reruns[-1] / "predictors/finetuned")
    old = read_results(tiny_run / "predictors/finetuned")
    for key in ("accuracy", "macro_f1", "nll"):
        assert new.metrics[key] == pytest.approx(old.metrics[key], abs=1e-6), key
    assert [r.confidence for r in read_predictions(reruns[-1] / "predictors/finetuned")] == pytest.approx(
        [r.confidence for r in read_predictions(tiny_run / "predictors/finetuned")], abs=1e-6
    )


def test_evaluate_reuses_a_training_run(tiny_run, tmp_path):
    proc = run_cli(
        "slmforge-evaluate", f"run_dir={tiny_run}", f"hydra.run.dir={tmp_path / 'ev'}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = read_results(tmp_path / "ev")
    old = read_results(tiny_run / "predictors/finetuned")
    assert new.predictor["method"] == "finetuned"
    assert new.metrics["accuracy"] == pytest.approx(old.metrics["accuracy"])
    assert new.metrics["nll"] == pytest.approx(old.metrics["nll"], abs=1e-4)
