"""``slmforge-evaluate``: score the base model (zero-/k-shot) or a saved adapter on any split.

Uses the same predictor and evaluation code as validation inside training. Writes ``results.json`` and
``predictions.jsonl`` (and ``predictions_validation.jsonl`` for routing) to its run directory.

    slmforge-evaluate                                    # base model, zero-shot, test split
    slmforge-evaluate run_dir=outputs/train/runs/<run>   # that run's model/data/task + its adapter
    slmforge-evaluate adapter_path=<dir> split=validation
    slmforge-evaluate k_shot=8 shot_selection=stratified
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from slmforge.config import config_dir
from slmforge.evaluation.runner import evaluate_split
from slmforge.modeling.adapters import merged_adapter
from slmforge.pipeline import (
    ConfigError,
    autocast_for,
    build_data,
    build_model,
    build_predictor,
    build_task,
    data_info,
    device_for,
    model_info,
    select_shots,
    to_container,
    user_errors_exit,
)
from slmforge.records import ResultsRecord
from slmforge.summary import comparison_table
from slmforge.tracking import finish, log_evaluation, make_loggers

log = logging.getLogger(__name__)


def _merge_training_run(cfg: DictConfig) -> DictConfig:
    """With ``run_dir=...``: take model, data, task and seed from that run's saved config."""
    run_dir = Path(str(cfg.run_dir)).expanduser()
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        raise ConfigError(
            f"run_dir={run_dir}: no saved config at {saved}; is it a slmforge-train run directory?"
        )
    old = OmegaConf.load(saved)
    merged = cfg.copy()
    OmegaConf.set_struct(merged, False)
    for key in ("model", "data", "task", "seed"):
        if key in old:
            merged[key] = old[key]
    # The run's data paths interpolate paths.shared_data: keep the folder the run was given on its command
    # line, unless this command sets one itself.
    old_shared = (
        OmegaConf.to_container(old.paths, resolve=False).get("shared_data") if "paths" in old else None
    )
    ours = OmegaConf.to_container(cfg.paths, resolve=False).get("shared_data")
    if old_shared is not None and str(ours).startswith("${oc.env:"):
        merged.paths.shared_data = old_shared
    if not cfg.get("adapter_path"):
        merged.adapter_path = str(run_dir / "adapter")
    return merged


def _load_adapter(model: Any, adapter_path: str) -> Any:
    from peft import PeftModel

    path = Path(adapter_path).expanduser()
    if not (path / "adapter_config.json").exists():
        raise ConfigError(
            f"adapter_path={adapter_path}: no adapter_config.json there; point it at a run's adapter/ directory"
        )
    try:
        return PeftModel.from_pretrained(model, str(path))
    except Exception as e:
        raise ConfigError(
            f"adapter at {path} does not fit model: {type(e).__name__}: {str(e)[:200]}. "
            f"Evaluate it with the model it was trained on (run_dir=<its run dir> does this)"
        ) from e


def evaluate(cfg: DictConfig) -> ResultsRecord:
    if cfg.get("run_dir"):
        cfg = _merge_training_run(cfg)
    try:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:
        out_dir = Path(cfg.paths.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    splits = build_data(cfg)
    task = build_task(cfg, splits)
    lm = build_model(cfg)
    if hasattr(task, "set_length_bound"):
        task.set_length_bound(lm.tokenizer, splits.train)
    method = "zero_shot"
    if cfg.get("adapter_path"):
        lm.model = _load_adapter(lm.model, str(cfg.adapter_path))
        method = "finetuned"
    k = int(cfg.get("k_shot") or 0)
    shots = select_shots(splits.train, k, str(cfg.shot_selection), int(cfg.seed), task.target_key)
    if k:
        method = "k_shot" if method == "zero_shot" else "finetuned_k_shot"
    hardware = to_container(cfg.hardware)
    lm.model.to(device_for(hardware))
    minfo = model_info(lm)
    name = cfg.get("name") or f"{minfo['model']}-{method.replace('_', '-')}" + (f"-k{k}" if k else "")
    predictor = build_predictor(
        lm, task, int(cfg.eval.batch_size), shots=shots, constrained=bool(cfg.eval.constrained),
        label_decoding=str(cfg.eval.label_decoding),
    )  # fmt: skip
    loggers = make_loggers(
        to_container(cfg.get("logger")), out_dir, name, to_container(cfg), [minfo["model"]], "evaluate"
    )
    with autocast_for(hardware), merged_adapter(lm.model, bool(cfg.eval.get("merge_adapter", True))):
        record, rows = evaluate_split(
            predictor, task, splits.get(str(cfg.split)), name=str(name), split=str(cfg.split),
            predictor_info={"kind": "local", "method": method, **minfo, "adapter": cfg.get("adapter_path"), "k": k},
            data_info=data_info(cfg, splits), out_dir=out_dir, latency_probe_n=int(cfg.eval.latency_probe_n),
            validation_examples=splits.validation if cfg.eval.validation_predictions and cfg.split == "test" else None,
        )  # fmt: skip
    log_evaluation(loggers, record, rows, f"{method}/{cfg.split}")
    from rich.console import Console

    Console(width=110).print(comparison_table({method: record}, task.primary_metric))
    print(f"outputs: {out_dir} (results.json, predictions.jsonl)")
    return record


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
@user_errors_exit
def main(cfg: DictConfig) -> float:
    try:
        record = evaluate(cfg)
        primary = record.metrics.get("accuracy", record.metrics.get("field_micro_f1", 0.0))
        return float(primary) if isinstance(primary, int | float) else 0.0
    finally:
        finish()


if __name__ == "__main__":
    main()
