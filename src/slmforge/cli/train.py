"""``slmforge-train``: fine-tune a causal LM with an adapter and compare it with the zero-shot base model.

Reads top to bottom: setup (data, task, model) -> data checks -> zero-shot baseline -> fit -> test -> save -> summary.
Each run directory ends up with:

    .hydra/config.yaml          the composed config (re-run it: slmforge-rerun <run dir>)
    config_resolved.yaml        the same with every interpolation resolved
    predictors/zero_shot/       results.json + predictions.jsonl of the base model
    predictors/finetuned/       results.json + predictions.jsonl (+ predictions_validation.jsonl)
    adapter/                    the adapter in PEFT format (PeftModel.from_pretrained loads it)
    checkpoints/last.ckpt       trainable weights + optimizer state, for ckpt_path=last
    metrics.json                a summary of both evaluations and of training
    train.log                   each stage with its duration
    validation.json, .md        the data checks (conf/validation/), run first; an error finding stops here

Heavy libraries (torch, Lightning, transformers) are imported inside the functions, so ``--help``,
``--cfg job`` and shell completion answer without loading them.
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from slmforge.cli.common import command, run_dir_of
from slmforge.config import config_dir

log = logging.getLogger("slmforge")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Everything ``slmforge-train`` does; returns the summary written to metrics.json."""
    from slmforge.training.run import fit_and_evaluate

    return fit_and_evaluate(cfg, run_dir_of(cfg))


def objective(summary: dict[str, Any]) -> float:
    """The number Optuna maximises: the fine-tuned model's **validation** primary metric (never test)."""
    from slmforge.errors import ConfigError

    val = summary.get("val") or {}
    metric = summary["primary_metric"]
    if metric not in val:
        raise ConfigError(
            f"the sweep objective is the validation {metric}, but this run has no validation result "
            f"(validation split empty, or train.val_check_interval never reached); give the data a validation "
            f"split (data.validation_path=... or data.validation_fraction>0) and keep train.val_check_interval <= 1"
        )
    value = float(val[metric])
    return value if summary.get("higher_is_better", True) else -value


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@command
def main(cfg: DictConfig) -> float | None:
    summary = train(cfg)
    # An HPO sweep (hparams_search=...) sets objective_required: its value is the validation metric, and a
    # run without one is an error (checked before training too). Plain runs return nothing to optimise.
    return objective(summary) if cfg.get("objective_required") else None


if __name__ == "__main__":
    main()
