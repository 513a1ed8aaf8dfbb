"""``slmforge-train``: fine-tune a causal LM with an adapter and compare it with the zero-shot base model.

Reads top to bottom: setup (data, task, model) -> zero-shot baseline -> fit -> test -> save -> summary.
Each run directory ends up with:

    .hydra/config.yaml          the composed config (re-run it: slmforge-rerun <run dir>)
    config_resolved.yaml        the same with every interpolation resolved
    predictors/zero_shot/       results.json + predictions.jsonl of the base model
    predictors/finetuned/       results.json + predictions.jsonl (+ predictions_validation.jsonl)
    adapter/                    the adapter in PEFT format (PeftModel.from_pretrained loads it)
    checkpoints/last.ckpt       trainable weights + optimizer state, for ckpt_path=last
    metrics.json                a summary of both evaluations and of training
"""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from slmforge.config import config_dir
from slmforge.data.datamodule import SLMDataModule
from slmforge.evaluation.runner import evaluate_split, predict_rows
from slmforge.modeling.adapters import AdapterSpec, apply_adapter, merged_adapter, trainable_parameters
from slmforge.modeling.module import CausalLMModule
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
    resolve_ckpt,
    to_container,
    user_errors_exit,
)
from slmforge.records import ResultsRecord
from slmforge.summary import print_summary
from slmforge.tracking import finish, log_adapter, log_evaluation, make_loggers

log = logging.getLogger(__name__)


def _run_dir(cfg: DictConfig) -> Path:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside @hydra.main (tests composing configs directly)
        return Path(cfg.paths.run_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Everything ``slmforge-train`` does; returns the summary written to metrics.json."""
    run_dir = _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    tcfg, ecfg = cfg.train, cfg.eval
    if int(tcfg.micro_batch_size) < 1 or int(tcfg.accumulate) < 1:
        raise ConfigError("train.micro_batch_size and train.accumulate must be >= 1")

    # ---- setup (everything that can fail on bad input fails here, before any compute) ---------------------
    ckpt_path = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    splits = build_data(cfg)
    task = build_task(cfg, splits)
    lm = build_model(cfg)
    if hasattr(task, "set_length_bound"):
        task.set_length_bound(lm.tokenizer, splits.train)
    dinfo, minfo = data_info(cfg, splits), model_info(lm)
    tags = [str(t) for t in cfg.get("tags") or []] + [
        minfo["model"],
        f"{minfo['params_m']}M",
        str(cfg.adapter.kind),
    ]
    loggers = make_loggers(
        to_container(cfg.get("logger")), run_dir, str(cfg.run_name), to_container(cfg), tags, job_type="train"
    )
    hardware = to_container(cfg.hardware)
    eval_kw = {"latency_probe_n": int(ecfg.latency_probe_n), "data_info": dinfo}
    predictors_dir = run_dir / "predictors"
    records: dict[str, ResultsRecord] = {}

    # ---- zero-shot baseline (the base model before any adapter) ---------------------------------------------
    def new_predictor() -> Any:
        """A predictor over ``lm.model`` as it is now (the zero-shot base model, later the adapted one)."""
        return build_predictor(
            lm, task, int(ecfg.batch_size), constrained=bool(ecfg.constrained),
            label_decoding=str(ecfg.label_decoding),
        )  # fmt: skip

    device = device_for(hardware)
    lm.model.to(device)
    if ecfg.zero_shot:
        predictor = new_predictor()
        with autocast_for(hardware):
            rec, rows = evaluate_split(
                predictor, task, splits.test, name=f"{minfo['model']}-zero-shot", split="test",
                predictor_info={"kind": "local", "method": "zero_shot", **minfo, "adapter": None, "k": 0},
                out_dir=predictors_dir / "zero_shot",
                tags={"machine": hardware.get("machine")} if hardware.get("machine") else None, **eval_kw,
            )  # fmt: skip
        records["zero_shot"] = rec
        log_evaluation(loggers, rec, rows, "zero_shot/test")

    # ---- fit ----------------------------------------------------------------------------------------------
    lm.model = apply_adapter(lm.model, AdapterSpec(**to_container(cfg.adapter)))
    n_trainable, n_total = trainable_parameters(lm.model)
    datamodule = SLMDataModule(
        task, lm.tokenizer, splits.train, splits.validation,
        micro_batch_size=int(tcfg.micro_batch_size), accumulate=int(tcfg.accumulate),
        max_length=int(tcfg.max_length), pad_multiple=int(hardware.get("pad_multiple", 1)),
        group_by_length=bool(tcfg.group_by_length), eval_batch_size=int(ecfg.batch_size), seed=int(cfg.seed),
    )  # fmt: skip
    val_predictor = new_predictor()  # a fresh one: it runs the adapted model
    module = CausalLMModule(
        lm.model,
        lr=float(tcfg.lr),
        weight_decay=float(tcfg.weight_decay),
        betas=tuple(tcfg.betas),
        warmup_ratio=float(tcfg.warmup_ratio),
        min_lr_ratio=float(tcfg.min_lr_ratio),
        grad_clip=float(tcfg.grad_clip) if tcfg.grad_clip else None,
        label_smoothing=float(tcfg.label_smoothing),
        sparse_lm_head=bool(tcfg.sparse_lm_head),
        fused_adamw=bool(tcfg.fused_adamw),
        shared_prefix=bool(tcfg.get("shared_prefix", True)),
        pack_max_tokens=int(tcfg.get("pack_max_tokens", 1024)),
        validate_fn=lambda exs: predict_rows(val_predictor, task, exs),
        metrics_fn=task.compute_metrics,
    )
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="step{step}", save_last=True, save_top_k=0,
        auto_insert_metric_name=False, every_n_train_steps=int(tcfg.checkpoint_every_n_steps),
    )  # fmt: skip
    trainer = L.Trainer(
        **hardware["trainer"],
        max_epochs=int(tcfg.epochs),
        max_steps=int(tcfg.max_steps),
        logger=loggers or False,
        callbacks=[checkpoint],
        default_root_dir=str(run_dir),
        val_check_interval=tcfg.val_check_interval,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        reload_dataloaders_every_n_epochs=1,  # re-seeds the window order each epoch
        enable_model_summary=False,
        deterministic=False,
    )
    t0 = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_wall = time.perf_counter() - t0
    stats = datamodule.token_stats()
    training = {
        "time_s": round(module.train_time_s, 2),
        "fit_wall_s": round(fit_wall, 2),
        "steps": int(trainer.global_step),
        "epochs": int(trainer.current_epoch),
        "tokens_seen": int(module.tokens_seen),
        "supervised_tokens_seen": int(module.supervised_tokens_seen),
        "tokens_per_s": round(module.tokens_seen / max(module.train_time_s, 1e-9), 1),
        "train_rows": stats["train_rows"],
        "mean_tokens_per_row": round(stats["mean_tokens"], 1),
        "trainable_params": n_trainable,
        "total_params": n_total,
        "precision": str(hardware["trainer"].get("precision")),
        "resumed_from": ckpt_path,
    }

    # ---- test, through the same evaluation path -------------------------------------------------------------
    adapter_dir = run_dir / "adapter"
    lm.model.to(device)  # Lightning's teardown moved it back to the CPU
    lm.model.save_pretrained(adapter_dir)  # PEFT format (safetensors)
    with autocast_for(hardware), merged_adapter(lm.model, bool(ecfg.get("merge_adapter", True))):
        rec, rows = evaluate_split(
            val_predictor, task, splits.test, name=f"{minfo['model']}-{cfg.adapter.kind}", split="test",
            predictor_info={"kind": "local", "method": "finetuned", **minfo, "adapter": str(adapter_dir), "k": 0},
            out_dir=predictors_dir / "finetuned", training=training,
            validation_examples=splits.validation if ecfg.validation_predictions else None,
            config_path=str(run_dir / ".hydra" / "config.yaml"), **eval_kw,
        )  # fmt: skip
    records["finetuned"] = rec
    log_evaluation(loggers, rec, rows, "finetuned/test")
    if (cfg.get("logger") or {}).get("wandb", {}).get("log_adapter", False):
        log_adapter(loggers, adapter_dir, str(cfg.run_name))

    summary = {
        "run_dir": str(run_dir),
        "task": task.name,
        "primary_metric": task.primary_metric,
        "data": dinfo,
        "training": training,
        "val": module.last_val_metrics and _scalars(module.last_val_metrics),
        **{name: {"metrics": _scalars(r.metrics), "latency_ms": r.latency_ms, "throughput": r.throughput}
           for name, r in records.items()},
        "peak_memory_mb": _peak_memory_mb(),
    }  # fmt: skip
    (run_dir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary, records, run_dir)
    return summary


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB


def objective(summary: dict[str, Any]) -> float:
    """The number Optuna maximises: the fine-tuned model's validation primary metric."""
    val = summary.get("val") or {}
    return float(
        val.get(
            summary["primary_metric"], summary["finetuned"]["metrics"].get(summary["primary_metric"], 0.0)
        )
    )


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@user_errors_exit
def main(cfg: DictConfig) -> float:
    try:
        return objective(train(cfg))
    finally:
        finish()  # one W&B run per job, also when the job fails


if __name__ == "__main__":
    main()
