"""One training run: setup -> zero-shot baseline -> fit -> save adapter -> test -> summary.

Called by ``slmforge-train`` and ``slmforge-compare``; the command modules stay thin. Everything that can
fail on bad input fails in :func:`~slmforge.build.build_setup` or in the checks here, before any compute.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from slmforge.build import (
    adapter_info,
    build_setup,
    check_data,
    evaluate_predictor,
    resolve_ckpt,
    stage,
    to_container,
)
from slmforge.errors import ConfigError
from slmforge.records import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    PREDICTORS_DIR,
    RESOLVED_CONFIG_FILE,
    RESULTS_FILE,
    RUN_SUMMARY_FILE,
    ResultsRecord,
    read_results,
)
from slmforge.training import run_folder

log = logging.getLogger("slmforge")


def build_callbacks(cfg: DictConfig, run_dir: Path, has_logger: bool = True) -> list[Any]:
    """The checkpoint callback slmforge needs, plus every callback of the ``callbacks`` group
    (``_target_`` entries; a null entry switches a default one off)."""
    import hydra
    import lightning as L

    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=run_dir / CHECKPOINTS_DIR, filename="step{step}", save_last=True, save_top_k=0,
        auto_insert_metric_name=False, every_n_train_steps=int(cfg.train.checkpoint_every_n_steps),
        enable_version_counter=False,  # always this run's last.ckpt, never a last-v1 beside another run's
    )  # fmt: skip
    out: list[Any] = [checkpoint]
    for name, cb in (cfg.get("callbacks") or {}).items():
        if cb is None:
            continue
        if not has_logger and str(cb.get("_target_", "")).endswith("LearningRateMonitor"):
            continue  # it needs a logger to write to (logger=none)
        if "_target_" not in cb:
            raise ConfigError(
                f"callbacks.{name} has no _target_; give the callback class, or null to disable it"
            )
        try:
            out.append(hydra.utils.instantiate(cb))
        except Exception as e:
            raise ConfigError(f"callbacks.{name} could not be built: {type(e).__name__}: {e}") from e
    return out


def fit_and_evaluate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Everything ``slmforge-train`` does; returns the summary written to metrics.json."""
    import lightning as L

    from slmforge.checks import check_run_config
    from slmforge.data.validation import validation_config
    from slmforge.modeling.adapter_files import save_adapter
    from slmforge.modeling.adapters import AdapterSpec, apply_adapter, merged_adapter, trainable_parameters
    from slmforge.tracking import log_adapter, log_evaluation, log_summary, make_loggers, predictions_to_log
    from slmforge.training.datamodule import SLMDataModule
    from slmforge.training.module import CausalLMModule

    rank_zero = process_rank() == 0
    check_run_config(cfg, run_dir)  # every bad value at once, before anything runs
    validation_config(cfg.get("validation"))  # a bad check name or severity, before anything runs
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    tcfg, ecfg = cfg.train, cfg.eval
    ckpt_path = resolve_ckpt(cfg.get("ckpt_path"), run_dir)
    if rank_zero:  # the other ranks of a data-parallel job write nothing of their own
        run_folder.claim(cfg, run_dir, resuming=ckpt_path is not None)
    setup = build_setup(cfg, run_dir=run_dir)
    if cfg.get("objective_required") and not setup.splits.validation:
        raise ConfigError(
            "this sweep optimises the validation metric but the validation split is empty; give the data a "
            "validation split (data.validation_path=... or data.validation_fraction=0.1)"
        )
    # The data checks (conf/validation/): the report beside the run, each warning logged, and an error
    # finding stops the run here, before the zero-shot evaluation and training.
    validation = check_data(setup, run_dir) if rank_zero else None
    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero:
        (run_dir / RESOLVED_CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    lm, task = setup.lm, setup.task
    assert lm is not None
    tags = [str(t) for t in cfg.get("tags") or []] + [
        setup.model["model"], f"{setup.model['params_m']}M", str(cfg.adapter.kind),
    ]  # fmt: skip
    resume_id = None
    if ckpt_path and rank_zero:
        run_folder.start_metrics_part(run_dir)
        resume_id = run_folder.latest_wandb_run_id(run_dir)
    loggers = make_loggers(
        to_container(cfg.get("logger")), run_dir, str(cfg.run_name), to_container(cfg), tags, job_type="train",
        resume_id=resume_id,
    )  # fmt: skip
    log_rows = predictions_to_log(cfg.get("logger"))
    if validation is not None:
        log_summary(loggers, validation.summary(), "the data validation counts")
    predictors_dir = run_dir / PREDICTORS_DIR
    records: dict[str, ResultsRecord] = {}

    # ---- zero-shot baseline (the base model before any adapter) ---------------------------------------------
    kept = predictors_dir / "zero_shot" / RESULTS_FILE
    if ckpt_path and ecfg.zero_shot and kept.exists():
        records["zero_shot"] = read_results(kept)  # a resume keeps the run's zero-shot record
    elif ecfg.zero_shot and rank_zero:
        rec, rows = evaluate_predictor(
            setup, setup.predictor(), method="zero_shot", out_dir=predictors_dir / "zero_shot"
        )
        records["zero_shot"] = rec
        log_evaluation(loggers, rec, rows, "zero_shot/test", max_rows=log_rows)

    # ---- fit ----------------------------------------------------------------------------------------------
    lm.model = apply_adapter(lm.model, AdapterSpec(**to_container(cfg.adapter)))
    n_trainable, n_total = trainable_parameters(lm.model)
    datamodule = SLMDataModule(
        task, lm.tokenizer, setup.splits.train, setup.splits.validation,
        micro_batch_size=int(tcfg.micro_batch_size), accumulate=int(tcfg.accumulate),
        max_length=task.max_length, pad_multiple=int(setup.hardware.get("pad_multiple", 1)),
        group_by_length=bool(tcfg.group_by_length), eval_batch_size=int(ecfg.batch_size), seed=int(cfg.seed),
        class_balance=float(tcfg.get("class_balance", 0.0)),
    )  # fmt: skip
    val_predictor = setup.predictor()  # a fresh one: it runs the adapted model
    from slmforge.evaluation.runner import predict_rows

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
        primary_metric=task.primary_metric,
    )
    trainer_kw = dict(setup.hardware["trainer"])
    clash = sorted(set(trainer_kw) & _TRAINER_KEYS_OWNED)
    if clash:
        raise ConfigError(
            f"hardware.trainer sets {clash}, which slmforge sets from train.* / callbacks.*; remove them from "
            f"the hardware config and use train.epochs, train.max_steps, train.val_check_interval or callbacks"
        )
    from slmforge.training.progress import ProgressLog, use_progress_bar

    bar = use_progress_bar(cfg.get("progress_bar", "auto"))  # else logged progress lines (files, CI)
    trainer = L.Trainer(
        **trainer_kw,
        max_epochs=int(tcfg.epochs),
        max_steps=int(tcfg.max_steps),
        logger=loggers or False,
        callbacks=[
            *build_callbacks(cfg, run_dir, has_logger=bool(loggers)),
            *([] if bar else [ProgressLog()]),
        ],
        plugins=[run_folder.atomic_checkpoint_io()],
        default_root_dir=str(run_dir),
        val_check_interval=tcfg.val_check_interval,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        reload_dataloaders_every_n_epochs=1,  # re-seeds the window order each epoch
        enable_model_summary=False,
        enable_progress_bar=bar,
        deterministic=False,
    )
    t0 = time.perf_counter()
    with stage(f"fit ({len(setup.splits.train)} train rows)"):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except SystemExit:
            if trainer.interrupted and rank_zero:
                _interrupted(run_dir)
            raise
    fit_wall = time.perf_counter() - t0
    if not trainer.is_global_zero:
        # Data-parallel training: the other ranks trained their shard; evaluation, the adapter, the records
        # and the summary are written once, by rank 0.
        return {"run_dir": str(run_dir), "rank": trainer.global_rank, "primary_metric": task.primary_metric}
    _leave_process_group()
    run_folder.merge_metrics_history(run_dir)
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
        "truncated_prompts": int(stats["truncated_prompts"]),
        "max_length": task.max_length,
        "trainable_params": n_trainable,
        "total_params": n_total,
        "precision": str(setup.hardware["trainer"].get("precision")),
        "resumed_from": ckpt_path,
    }

    # ---- test, through the same evaluation path -------------------------------------------------------------
    adapter_dir = run_dir / ADAPTER_DIR
    lm.model.to(setup.device)  # Lightning's teardown moved it back to the CPU
    adapter_sha = save_adapter(lm.model, adapter_dir, setup.model)
    with merged_adapter(lm.model, bool(ecfg.get("merge_adapter", True))):
        rec, rows = evaluate_predictor(
            setup, val_predictor, method="finetuned", out_dir=predictors_dir / "finetuned",
            name=f"{setup.model['model']}-{cfg.adapter.kind}",
            adapter={**adapter_info(cfg.adapter, adapter_dir), "sha256": adapter_sha}, training=training,
            validation=bool(ecfg.validation_predictions or cfg.get("objective_required")),
        )  # fmt: skip
    records["finetuned"] = rec
    log_evaluation(loggers, rec, rows, "finetuned/test", max_rows=log_rows)
    if (cfg.get("logger") or {}).get("wandb", {}).get("log_adapter", False):
        log_adapter(loggers, adapter_dir, str(cfg.run_name))

    summary = {
        "run_dir": str(run_dir),
        "task": task.name,
        "primary_metric": task.primary_metric,
        "higher_is_better": task.higher_is_better,
        "data": setup.data,
        "training": training,
        # The final model's validation metrics (what an HPO objective reads), else the last in-loop ones.
        "val": rec.metrics.get("validation") or (module.last_val_metrics and _scalars(module.last_val_metrics)),
        **{name: {"metrics": _scalars(r.metrics), "latency_ms": r.latency_ms, "throughput": r.throughput}
           for name, r in records.items()},
        "peak_memory_mb": _peak_memory_mb(),
    }  # fmt: skip
    (run_dir / RUN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))
    from slmforge.cli.summary import print_summary

    print_summary(summary, records, run_dir)
    return summary


# Trainer arguments slmforge sets itself: a hardware config that also sets one would collide.
_TRAINER_KEYS_OWNED = {
    "max_epochs", "max_steps", "logger", "callbacks", "default_root_dir", "val_check_interval",
    "num_sanity_val_steps", "log_every_n_steps", "reload_dataloaders_every_n_epochs",
    "enable_model_summary", "enable_progress_bar", "deterministic",
}  # fmt: skip


def _interrupted(run_dir: Path) -> None:
    """Ctrl-C: the W&B run is marked interrupted (not finished) and the resume command printed."""
    import shlex
    import sys

    from slmforge.build import job_overrides
    from slmforge.tracking import finish

    finish(exit_code=130)
    again = [o for o in job_overrides() if not o.startswith(("ckpt_path=", "overwrite="))]
    cmd = shlex.join(["slmforge-train", *again, f"hydra.run.dir={run_dir}", "ckpt_path=last"])
    print(f"interrupted: the last checkpoint is in {run_dir / CHECKPOINTS_DIR}; resume with:\n  {cmd}",
          file=sys.stderr, flush=True)  # fmt: skip
    raise SystemExit(130)


def _leave_process_group() -> None:
    """After a data-parallel fit, rank 0 evaluates alone: without the process group, metrics (torchmetrics)
    do not wait for ranks that have already finished."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def process_rank() -> int:
    """This process's rank in a data-parallel job (0 when not distributed). Lightning's launcher re-runs the
    command in each extra process with ``LOCAL_RANK``/``NODE_RANK`` set, before the process group exists."""
    import os

    local = int(os.environ.get("LOCAL_RANK", 0) or 0)
    node = int(os.environ.get("NODE_RANK", 0) or 0)
    return int(os.environ.get("RANK", local + node)) if (local or node or "RANK" in os.environ) else 0


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux reports KiB
