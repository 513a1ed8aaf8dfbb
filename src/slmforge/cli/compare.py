"""``slmforge-compare``: the SLM-vs-LLM comparison in one command.

1. ``slmforge-train`` (zero-shot base model + LoRA fine-tune, both scored on the test split), or, with
   ``run_dir=<an earlier run>``, that run as it is (no retraining);
2. every configured baseline through the same setup and evaluation path: k-shot prompting of the base model
   and any OpenAI-compatible API model (``api_baselines``), into ``<run>/predictors/<name>``;
3. ``slmforge-report`` over the run: leaderboard, cost, Pareto plots, recommendation (``<run>/report``).

Prices are checked before any compute: an API model missing from the price table stops the command at once.

    slmforge-compare                                   # offline: zero-shot, k-shot and LoRA, then the report
    slmforge-compare +baseline@api_baselines.gpt4o_mini=api api_baselines.gpt4o_mini.model=gpt-4o-mini
    slmforge-compare run_dir=outputs/compare/runs/<run> +baseline@api_baselines.gpt4o=api \\
        api_baselines.gpt4o.model=gpt-4o k_shot_baselines.k_shot=null   # add an LLM to an existing run
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from slmforge.cli.common import command
from slmforge.config import config_dir
from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.build import Setup
    from slmforge.records import ResultsRecord

log = logging.getLogger("slmforge")


def _api_specs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    from slmforge.build import to_container

    out = {}
    for name, b in (cfg.get("api_baselines") or {}).items():
        if not b:
            continue
        spec = to_container(b)
        if "_target_" not in spec:
            raise ConfigError(
                f"api_baselines.{name} has no _target_; add it with +baseline@api_baselines.{name}=api"
            )
        out[str(name)] = spec
    return out


def check_prices(cfg: DictConfig) -> None:
    """Every API baseline's model must have a price before anything runs (else the report cannot rank it)."""
    from slmforge.economics.pricing import Pricing
    from slmforge.errors import PricingError

    pricing = Pricing.from_config(cfg.pricing)
    for name, spec in _api_specs(cfg).items():
        model = str(spec.get("model") or "")
        try:
            pricing.api_price(model)
        except PricingError as e:
            raise PricingError(
                f"api_baselines.{name}: {e}, or on the command line: '+pricing.api.{model}={{input_per_1k: ..., "
                f"output_per_1k: ...}}' (USD per 1k tokens), so the comparison can rank it; nothing has run yet"
            ) from e


def run_baselines(cfg: DictConfig, run_dir: Path) -> dict[str, ResultsRecord]:
    """Evaluate the k-shot and API baselines into ``<run_dir>/predictors/<name>``."""
    from slmforge.build import build_setup, evaluate_predictor
    from slmforge.records import PREDICTORS_DIR

    kshots = [(str(name), b) for name, b in (cfg.get("k_shot_baselines") or {}).items() if b]
    apis = _api_specs(cfg)
    if not kshots and not apis:
        return {}
    setup: Setup = build_setup(cfg, with_model=bool(kshots), run_dir=run_dir)
    records: dict[str, ResultsRecord] = {}
    for name, b in kshots:
        k, selection = int(b.k), str(b.selection)
        predictor = setup.predictor(shots=setup.shots(k, selection), batch_size=int(b.get("batch_size") or 0))
        rec, rows = evaluate_predictor(
            setup, predictor, method="k_shot", k=k, selection=selection, name=f"{setup.model['model']}-{k}shot",
            out_dir=run_dir / PREDICTORS_DIR / name,
        )  # fmt: skip
        records[name] = rec
        _log_baseline(cfg, run_dir, name, rec, rows)
    for name, spec in apis.items():
        k = int(spec.pop("k", 0) or 0)
        selection = str(spec.pop("selection", "stratified"))
        factory = hydra.utils.instantiate(spec, _convert_="all")
        predictor = factory(task=setup.task, shots=setup.shots(k, selection))
        try:
            rec, rows = evaluate_predictor(
                setup, predictor, method="k_shot" if k else "api", kind="api", k=k, selection=selection,
                name=predictor.name, out_dir=run_dir / PREDICTORS_DIR / name,
            )  # fmt: skip
        finally:
            close = getattr(predictor, "close", None)
            if close is not None:
                close()
        records[name] = rec
        _log_baseline(cfg, run_dir, name, rec, rows)
    return records


def _log_baseline(cfg: DictConfig, run_dir: Path, name: str, rec: Any, rows: Any) -> None:
    """Each baseline is its own W&B run, named after it and grouped with the training run it compares to."""
    from slmforge.build import to_container
    from slmforge.records import PREDICTORS_DIR
    from slmforge.tracking import finish, log_evaluation, make_loggers, predictions_to_log

    logger_cfg = to_container(cfg.get("logger")) or {}
    if "wandb" not in logger_cfg:
        return
    loggers = make_loggers(
        logger_cfg, run_dir / PREDICTORS_DIR / name, f"{cfg.run_name}-{name}", to_container(cfg),
        [str(rec.predictor.get("model"))], job_type="baseline",
    )  # fmt: skip
    log_evaluation(loggers, rec, rows, f"{name}/test", max_rows=predictions_to_log(logger_cfg))
    finish()


def report_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    from slmforge.build import to_container
    from slmforge.cli.sweep_callback import sweep_group
    from slmforge.records import PREDICTORS_DIR

    rep = to_container(cfg.report)
    wb = rep.setdefault("wandb", {})
    if not wb.get("group"):  # the group the training run and the baselines logged to
        wb["group"] = sweep_group(((to_container(cfg.get("logger")) or {}).get("wandb") or {}).get("group"))
    wb.setdefault("name", f"report-{run_dir.name}")
    return OmegaConf.create(
        {
            **rep,
            "runs": [str(run_dir / PREDICTORS_DIR)],
            "output_dir": str(run_dir / "report"),
            "pricing": to_container(cfg.pricing),
        }
    )


def compare(cfg: DictConfig) -> dict[str, Any]:
    from slmforge.cli.common import run_dir_of
    from slmforge.tracking import finish

    check_prices(cfg)
    if cfg.get("run_dir"):
        run_dir = Path(str(cfg.run_dir)).expanduser()
        if not (run_dir / "predictors").is_dir():
            raise ConfigError(
                f"run_dir={run_dir}: no predictors/ folder there; pass a slmforge-train/compare run"
            )
        cfg = _with_run_config(cfg, run_dir)
        summary: dict[str, Any] = {"run_dir": str(run_dir)}
    else:
        from slmforge.training.run import fit_and_evaluate

        summary = fit_and_evaluate(cfg, run_dir_of(cfg))
        run_dir = Path(summary["run_dir"])
    finish()  # the training run's W&B run ends before the baselines open their own
    run_baselines(cfg, run_dir)
    from slmforge.cli.report import build_report

    files, where = build_report(report_config(cfg, run_dir))
    print(f"report: {files.markdown}\nreport: {files.html}")
    if where:
        print(f"wandb:  {where}")
    print(f"recommendation: {files.recommendation}")
    return summary


def _with_run_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """Baselines for an existing run use that run's model, data, task and seed (its saved config)."""
    from slmforge.cli.evaluate import merge_training_run

    merged = merge_training_run(cfg)
    merged.adapter_path = None
    return merged


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="compare")
@command
def main(cfg: DictConfig) -> None:
    compare(cfg)


if __name__ == "__main__":
    main()
