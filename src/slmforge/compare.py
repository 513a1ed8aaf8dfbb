"""``slmforge-compare``: the SLM-vs-LLM comparison in one command.

1. ``slmforge-train`` (zero-shot base model + LoRA fine-tune, both scored on the test split);
2. every configured baseline through the same evaluation path: k-shot prompting of the base model and
   any OpenAI-compatible API model (``api_baselines``);
3. ``slmforge-report`` over the run: leaderboard, cost, Pareto plots, recommendation (``<run>/report``).

    slmforge-compare                                   # offline: zero-shot, k-shot and LoRA, then the report
    slmforge-compare +baseline@api_baselines.gpt4o_mini=api api_baselines.gpt4o_mini.model=gpt-4o-mini
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
from slmforge.tracking import finish
from slmforge.train import train

log = logging.getLogger(__name__)


def run_baselines(cfg: DictConfig, run_dir: Path) -> dict[str, ResultsRecord]:
    """Evaluate the k-shot and API baselines into ``<run_dir>/predictors/<name>``."""
    splits = build_data(cfg)
    task = build_task(cfg, splits)
    dinfo = data_info(cfg, splits)
    records: dict[str, ResultsRecord] = {}
    hardware = to_container(cfg.hardware)
    validation = splits.validation if cfg.eval.validation_predictions else None
    kshots = [(name, b) for name, b in (cfg.get("k_shot_baselines") or {}).items() if b]
    if kshots:
        lm = build_model(cfg)
        lm.model.to(device_for(hardware))
        minfo = model_info(lm)
        for name, b in kshots:
            k = int(b.k)
            shots = select_shots(splits.train, k, str(b.selection), int(cfg.seed), task.target_key)
            predictor = build_predictor(
                lm, task, int(b.get("batch_size") or cfg.eval.batch_size), shots=shots,
                constrained=bool(cfg.eval.constrained), label_decoding=str(cfg.eval.label_decoding),
            )  # fmt: skip
            with autocast_for(hardware):
                rec, _ = evaluate_split(
                    predictor, task, splits.test, name=f"{minfo['model']}-{k}shot", split="test",
                    predictor_info={"kind": "local", "method": "k_shot", **minfo, "adapter": None, "k": k,
                                    "selection": str(b.selection)},
                    data_info=dinfo, out_dir=run_dir / "predictors" / name,
                    latency_probe_n=int(cfg.eval.latency_probe_n), validation_examples=validation,
                )  # fmt: skip
            records[name] = rec
    for name, b in (cfg.get("api_baselines") or {}).items():
        if not b:
            continue
        spec = to_container(b)
        if "_target_" not in spec:
            raise ConfigError(
                f"api_baselines.{name} has no _target_; add it with +baseline@api_baselines.{name}=api"
            )
        k = int(spec.pop("k", 0) or 0)
        selection = str(spec.pop("selection", "stratified"))
        shots = select_shots(splits.train, k, selection, int(cfg.seed), task.target_key)
        factory = hydra.utils.instantiate(spec, _convert_="all")
        predictor = factory(task=task, shots=shots)
        rec, _ = evaluate_split(
            predictor, task, splits.test, name=predictor.name, split="test",
            predictor_info={"kind": "api"}, data_info=dinfo, out_dir=run_dir / "predictors" / name,
            latency_probe_n=0, validation_examples=validation,
        )  # fmt: skip
        records[name] = rec
    return records


def report_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    rep = to_container(cfg.report)
    return OmegaConf.create(
        {
            **rep,
            "runs": [str(run_dir / "predictors")],
            "output_dir": str(run_dir / "report"),
            "pricing": to_container(cfg.pricing),
        }
    )


def compare(cfg: DictConfig) -> dict[str, Any]:
    summary = train(cfg)
    run_dir = Path(summary["run_dir"])
    run_baselines(cfg, run_dir)
    finish()  # the training run's W&B run ends before the report opens its own
    from slmforge.report import build_report

    files, where = build_report(report_config(cfg, run_dir))
    print(f"report: {files.markdown}\nreport: {files.html}")
    if where:
        print(f"wandb:  {where}")
    print(f"recommendation: {files.recommendation}")
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="compare")
@user_errors_exit
def main(cfg: DictConfig) -> None:
    try:
        HydraConfig.get()
        compare(cfg)
    finally:
        finish()


if __name__ == "__main__":
    main()
