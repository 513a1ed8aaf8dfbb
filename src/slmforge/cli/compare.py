"""``slmforge-compare``: the SLM-vs-LLM comparison in one command.

1. ``slmforge-train`` (zero-shot base model + LoRA fine-tune, both scored on the test split), or, with
   ``run_dir=<an earlier run>``, that run as it is (no retraining);
2. every configured baseline through the same setup and evaluation path: k-shot prompting of the base model
   and any OpenAI-compatible API model (``api_baselines``), into ``<run>/predictors/<name>``;
3. ``slmforge-report`` over the run: leaderboard, cost, Pareto plots, recommendation (``<run>/report``).

Several seeds (``seeds=[0,1,2]``): steps 1-2 run once per seed into ``<run>/seed_<s>/`` (each seed its own
training, shot draw and, with ``data.seed: ${seed}``, test draw), then one report over all of them at
``<run>/report``: each predictor's seeds become one leaderboard row with the mean, a 95% interval and its
paired difference from the best (see ``reporting/leaderboard.py``). ``seeds: null`` (the default) runs
``seed`` alone in ``<run>`` itself, exactly as before. ``slmforge-compare -m seed=0,1,2`` followed by
``slmforge-report runs=[<multirun dir>]`` gives the same aggregated report.

Prices are checked before any compute: an API model missing from the price table stops the command at once.

    slmforge-compare                                   # offline: zero-shot, k-shot and LoRA, then the report
    slmforge-compare seeds=[0,1,2]                     # the same for three seeds, one report with 95% CIs
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
        predictor = setup.predictor(
            shots=setup.shots(k, selection),
            batch_size=int(b.get("batch_size") or 0),
            scoring=b.get("scoring"),
        )
        scoring = str(predictor.describe().get("scoring") or "raw")
        label = f"{setup.model['model']}-{f'{k}shot' if k else 'zero-shot'}"
        rec, rows = evaluate_predictor(
            setup, predictor, method="k_shot" if k else "zero_shot", k=k, selection=selection,
            name=label if scoring == "raw" else f"{label}-{scoring}", out_dir=run_dir / PREDICTORS_DIR / name,
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


def report_config(cfg: DictConfig, run_dir: Path, runs: list[Path] | None = None) -> DictConfig:
    """The report settings for this comparison; ``runs`` (default ``<run_dir>/predictors``) are read."""
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
            "runs": [str(p) for p in runs or [run_dir / PREDICTORS_DIR]],
            "output_dir": str(run_dir / "report"),
            "pricing": to_container(cfg.pricing),
        }
    )


def seeds_of(cfg: DictConfig) -> list[int] | None:
    """``seeds`` as a list of distinct ints, or None (``seeds: null``: just ``seed``, in the run folder)."""
    raw = cfg.get("seeds")
    if raw is None:
        return None
    values = list(raw) if OmegaConf.is_list(raw) or isinstance(raw, list | tuple) else [raw]
    try:
        seeds = [int(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"seeds={values}: seeds must be integers, e.g. seeds=[0,1,2]") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds}: give distinct integer seeds, e.g. seeds=[0,1,2] (or seeds=null)")
    return seeds


def _for_seed(cfg: DictConfig, seed: int) -> DictConfig:
    """This command's config with ``seed`` set (data, shots and training follow it by interpolation); W&B
    runs are named per seed."""
    out = cfg.copy()
    OmegaConf.set_struct(out, False)
    out.seed = seed
    out.seeds = None
    if out.get("run_name"):
        out.run_name = f"{cfg.run_name}-seed{seed}"
    return out


def compare_seeds(cfg: DictConfig, seeds: list[int]) -> dict[str, Any]:
    """One training run and its baselines per seed into ``<run>/seed_<s>``, then one report over all."""
    from slmforge.cli.common import run_dir_of
    from slmforge.tracking import finish
    from slmforge.training.run import fit_and_evaluate

    root = run_dir_of(cfg)
    summaries = {}
    for seed in seeds:
        log.info("compare: seed %d of %s", seed, seeds)
        seed_cfg = _for_seed(cfg, seed)
        summaries[seed] = fit_and_evaluate(seed_cfg, root / f"seed_{seed}")
        finish()
        run_baselines(seed_cfg, root / f"seed_{seed}")
    _report(cfg, root, [root / f"seed_{s}" for s in seeds])
    return {"run_dir": str(root), "seeds": summaries}


def _report(cfg: DictConfig, run_dir: Path, runs: list[Path] | None = None) -> None:
    from slmforge.cli.report import build_report

    files, where = build_report(report_config(cfg, run_dir, runs))
    print(f"report: {files.markdown}\nreport: {files.html}")
    if where:
        print(f"wandb:  {where}")
    print(f"recommendation: {files.recommendation}")


def compare(cfg: DictConfig) -> dict[str, Any]:
    from slmforge.cli.common import run_dir_of
    from slmforge.tracking import finish

    check_prices(cfg)
    seeds = seeds_of(cfg)
    if seeds is not None and cfg.get("run_dir"):
        raise ConfigError(
            "seeds=[...] with run_dir=...: add baselines to each seed's folder instead, e.g. "
            "run_dir=<run>/seed_0 (then slmforge-report runs=[<run>] for the aggregated report)"
        )
    if seeds is not None:
        return compare_seeds(cfg, seeds)
    if cfg.get("run_dir"):
        run_dir = Path(str(cfg.run_dir)).expanduser()
        if not (run_dir / "predictors").is_dir():
            seeded = sorted(p.name for p in run_dir.glob("seed_*") if (p / "predictors").is_dir())
            hint = (
                f" (a seeds=[...] run: pass one seed's folder, e.g. run_dir={run_dir / seeded[0]})"
                if seeded
                else ""
            )
            raise ConfigError(
                f"run_dir={run_dir}: no predictors/ folder there; pass a slmforge-train/compare run{hint}"
            )
        cfg = _with_run_config(cfg, run_dir)
        summary: dict[str, Any] = {"run_dir": str(run_dir)}
    else:
        from slmforge.training.run import fit_and_evaluate

        summary = fit_and_evaluate(cfg, run_dir_of(cfg))
        run_dir = Path(summary["run_dir"])
    finish()  # the training run's W&B run ends before the baselines open their own
    run_baselines(cfg, run_dir)
    _report(cfg, run_dir)
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
