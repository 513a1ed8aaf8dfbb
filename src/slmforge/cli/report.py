"""``slmforge-report``: turn finished runs into a ranked, priced comparison and a deployment recommendation.

    slmforge-report runs=[multirun/2025-06-01/12-00-00]

Reads every ``results*.json`` under ``runs``, prices each predictor with ``conf/pricing/default.yaml``,
aggregates each predictor's seeds into one row with a 95% CI and its paired difference from the best (from
the ``predictions.jsonl`` beside each record; ``statistics.*`` in ``conf/report/default.yaml``), and writes ``report.md``, ``report.html`` (self-contained), the PNG plots and ``leaderboard.csv`` to
``output_dir``; then logs a W&B ``job_type=report`` run (offline unless configured otherwise). Bad input
ends the process with one ``error: ...`` line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from slmforge.cli.common import command
from slmforge.config import config_dir
from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.economics.pricing import Pricing
    from slmforge.records import ResultsRecord
    from slmforge.reporting.evidence import Evidence
    from slmforge.reporting.render import ExtraSection, ReportFiles

log = logging.getLogger(__name__)


def _runs(cfg: DictConfig) -> list[str]:
    if OmegaConf.is_missing(cfg, "runs") or cfg.get("runs") in (None, "", []):
        raise ConfigError(
            "no runs given; pass the runs to compare, e.g. slmforge-report runs=[path/to/multirun]"
        )
    runs = cfg.runs
    if isinstance(runs, ListConfig | list | tuple):
        return [str(r) for r in runs]
    return [str(runs)]  # `runs=path` without brackets is a common slip; accept it


def build_report(
    cfg: DictConfig, extra_sections: Sequence[ExtraSection] | None = None
) -> tuple[ReportFiles, str | None]:
    """Everything the CLI does, callable from code and tests: returns the files and the W&B location."""
    from slmforge.economics.pricing import Pricing
    from slmforge.reporting.collect import collect_record_files
    from slmforge.reporting.evidence import Evidence
    from slmforge.reporting.leaderboard import leaderboard
    from slmforge.reporting.render import write_report
    from slmforge.reporting.wandb_summary import log_report_to_wandb, report_run_name, runs_group

    runs = _runs(cfg)
    found = collect_record_files(runs)
    records = [r for r, _ in found]
    evidence = Evidence.from_files(records, [f for _, f in found])
    stats_cfg = cfg.get("statistics") or {}
    pricing = Pricing.from_config(cfg.pricing)
    primary = primary_metric_of(records, cfg.get("primary_metric"))
    df = leaderboard(
        records,
        pricing,
        primary_metric=primary,
        weights=OmegaConf.to_container(cfg.weights) if cfg.get("weights") else None,  # type: ignore[arg-type]
        machine=str(cfg.machine),
        training_machine=str(cfg.training_machine) if cfg.get("training_machine") else None,
        monthly_requests=int(cfg.monthly_requests),
        evidence=evidence,
        alpha=float(stats_cfg.get("alpha", 0.05)),
        resamples=int(stats_cfg.get("resamples", 2000)),
    )
    files = write_report(
        df,
        Path(cfg.output_dir),
        extra_sections=[*(extra_sections or []), *sweep_sections(cfg, records, pricing, evidence)],
        title=str(cfg.title),
        evidence=evidence,
    )
    where = None
    wb = cfg.get("wandb") or {}
    if wb.get("enabled", False):
        config: dict[str, Any] = {
            "runs": runs,
            "primary_metric": primary,
            "weights": OmegaConf.to_container(cfg.weights),
            "machine": cfg.machine,
            "monthly_requests": int(cfg.monthly_requests),
        }
        where = log_report_to_wandb(
            df,
            files.plots,
            files.recommendation,
            project=str(wb.get("project", "slmforge")),
            entity=wb.get("entity"),
            mode=str(wb.get("mode") or "offline"),
            name=str(wb.get("name") or report_run_name(runs)),
            group=str(wb.get("group") or runs_group(records)),
            config=config,
            report_files={"markdown": files.markdown, "html": files.html, "csv": files.csv},
            directory=Path(cfg.output_dir),
        )
    return files, where


def sweep_sections(
    cfg: DictConfig, records: Sequence[ResultsRecord], pricing: Pricing, evidence: Evidence
) -> list[ExtraSection]:
    """The sections only some comparisons have: the learning curve (records of a training-size sweep), the
    break-even volume (a fine-tuned predictor next to an API one) and the sweep leaderboard (a hyperparameter
    sweep's configurations ranked on validation); each is None when it does not apply."""
    from slmforge.reporting.learning_curve import break_even_section, learning_curve_section
    from slmforge.reporting.sweep import sweep_leaderboard_section

    out_dir = Path(cfg.output_dir)
    training_machine = str(cfg.training_machine) if cfg.get("training_machine") else None
    sections = [
        learning_curve_section(records, out_dir, evidence.rows_by_run_id(records)),
        break_even_section(
            records, pricing, out_dir, machine=str(cfg.machine), training_machine=training_machine
        ),
        sweep_leaderboard_section(records, out_dir),
    ]
    return [s for s in sections if s is not None]


def primary_metric_of(records: Sequence[ResultsRecord], override: str | None = None) -> str:
    """The metric that ranks these records: ``override`` when given, else the one every record names."""
    if override:
        return str(override)
    named = sorted({r.primary_metric for r in records})
    if len(named) > 1:
        by = {m: [r.name for r in records if r.primary_metric == m][:3] for m in named}
        raise ConfigError(
            f"these records rank on different primary metrics ({by}); report one task at a time, or pick one "
            f"metric for all with primary_metric=<name>"
        )
    return named[0]


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="report")
@command
def main(cfg: DictConfig) -> None:
    """Console entry point: build the report, print where it went and the recommendation."""
    files, where = build_report(cfg)
    print(f"report: {files.markdown}")
    print(f"report: {files.html}")
    if where:
        print(f"wandb:  {where}")
    print(f"recommendation: {files.recommendation}")


if __name__ == "__main__":
    main()
