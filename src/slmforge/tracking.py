"""Experiment tracking: W&B (offline unless configured) and CSV loggers, built from the ``logger`` group.

Local files never depend on W&B: results.json / predictions.jsonl are written first, then mirrored here.
``finish()`` closes the W&B run at the end of every job, so each job of a Hydra multirun is its own run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from slmforge.records import PredictionRow, ResultsRecord

log = logging.getLogger(__name__)


def make_loggers(
    logger_cfg: dict[str, Any] | None,
    run_dir: str | Path,
    run_name: str,
    config: dict[str, Any],
    tags: list[str],
    job_type: str = "train",
) -> list[Logger]:
    loggers: list[Logger] = []
    cfg = dict(logger_cfg or {})
    if "wandb" in cfg:
        wb = dict(cfg["wandb"] or {})
        loggers.append(
            WandbLogger(
                name=run_name,
                save_dir=str(run_dir),
                project=wb.get("project", "slmforge"),
                entity=wb.get("entity"),
                group=wb.get("group"),
                tags=[str(t) for t in tags],
                mode=wb.get("mode", "offline"),
                job_type=job_type,
                config=config,
                log_model=False,
            )
        )
    if "csv" in cfg:
        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    return loggers


def wandb_run(loggers: list[Logger]) -> Any | None:
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            return lg.experiment
    return None


def log_evaluation(
    loggers: list[Logger],
    record: ResultsRecord,
    rows: list[PredictionRow],
    prefix: str,
    max_rows: int = 200,
) -> None:
    """Scalars of a results record (as ``<prefix>/<metric>``) and a predictions table, to W&B."""
    run = wandb_run(loggers)
    if run is None:
        return
    import wandb

    scalars = {f"{prefix}/{k}": v for k, v in record.metrics.items() if isinstance(v, int | float)}
    scalars.update({f"{prefix}/latency_{k}_ms": v for k, v in record.latency_ms.items()})
    scalars[f"{prefix}/examples_per_s"] = record.throughput.get("examples_per_s", 0.0)
    run.log(scalars)
    run.summary.update(scalars)
    if max_rows:
        table = wandb.Table(columns=["id", "text", "gold", "pred", "confidence", "correct", "latency_ms"])
        for r in rows[:max_rows]:
            table.add_data(
                r.id, r.text[:500], str(r.gold), str(r.pred), r.confidence, r.correct, r.latency_ms
            )
        run.log({f"{prefix}/predictions": table})


def log_adapter(loggers: list[Logger], adapter_dir: Path, name: str) -> None:
    run = wandb_run(loggers)
    if run is None or not adapter_dir.exists():
        return
    import wandb

    artifact = wandb.Artifact(name=f"adapter-{name}".replace("/", "-")[:120], type="model")
    artifact.add_dir(str(adapter_dir))
    run.log_artifact(artifact)


def finish() -> None:
    """Close the W&B run (if any), so the next multirun job starts its own."""
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as e:  # tracking must never lose the local results
        log.warning("wandb.finish() failed: %s", e)
