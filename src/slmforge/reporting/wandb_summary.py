"""Log the report to Weights & Biases: a ``job_type="report"`` run with the leaderboard table and plots.

Offline by default (the run is written under ``WANDB_DIR`` and can be ``wandb sync``-ed later). Online,
and only when the optional ``wandb-workspaces`` package is installed, a W&B Report page is also built
from the logged table and images. Online logging falls back to offline, and any W&B failure is warned once
and never fatal (:mod:`slmforge.tracking`), because the local report.md/report.html are the primary output.

The run is named after what it summarises (``report-<run folder>``) and joins the W&B group of the runs it
summarises (:func:`runs_group`), so that it sits next to them in the W&B UI.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from slmforge.cli.sweep_callback import sweep_group
from slmforge.records import RESOLVED_CONFIG_FILE
from slmforge.tracking import wandb_mode, warn_wandb_failure

if TYPE_CHECKING:
    from slmforge.records import ResultsRecord

log = logging.getLogger(__name__)

TABLE_KEY = "leaderboard"
DEFAULT_GROUP = "report"


def report_run_name(runs: Sequence[str | Path]) -> str:
    """``report-<folder>`` after the run or sweep folders a report summarises (``+``-joined, capped)."""
    return ("report-" + "+".join(Path(str(r)).resolve().name for r in runs))[:128]


def runs_group(records: Sequence[ResultsRecord]) -> str:
    """The W&B group the records' runs logged to when they share one, else ``report``.

    Read from each record's run folder (its resolved config and ``.hydra/hydra.yaml``), the same way the run
    chose it (:func:`~slmforge.cli.sweep_callback.sweep_group`); runs that logged no W&B run are ignored.
    """
    groups = {g for g in map(_logged_group, records) if g}
    return groups.pop() if len(groups) == 1 else DEFAULT_GROUP


def _logged_group(record: ResultsRecord) -> str | None:
    if not record.config_path:
        return None
    run_dir = Path(record.config_path).parent.parent  # <run dir>/.hydra/config.yaml
    try:
        cfg = OmegaConf.load(run_dir / RESOLVED_CONFIG_FILE)
        hydra_cfg = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").get("hydra")
    except (OSError, ValueError, yaml.YAMLError):  # an unreadable run folder: its group is unknown
        return None
    group = OmegaConf.select(cfg, "logger.wandb.group", default=None)
    if not group or hydra_cfg is None:
        return str(group) if group else None
    return sweep_group(str(group), hydra_cfg)


def _table_frame(df: pd.DataFrame) -> pd.DataFrame:
    """W&B tables want plain column types: objects become strings, bools stay bools, NaN stays NaN."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(
                lambda v: "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
            )
    return out


def log_report_to_wandb(
    df: pd.DataFrame,
    plots: Mapping[str, str | Path],
    recommendation_text: str,
    *,
    project: str = "slmforge",
    mode: str | None = "offline",
    entity: str | None = None,
    name: str | None = None,
    group: str | None = None,
    config: Mapping[str, Any] | None = None,
    report_files: Mapping[str, str | Path] | None = None,
    build_report: bool = True,
    directory: str | Path | None = None,
) -> str | None:
    """Log one summary run and return its directory (offline) or URL (online); None if W&B failed.

    ``mode`` is W&B's: ``offline``, ``online`` or ``disabled``; ``None`` defers to ``WANDB_MODE``; online
    without a login or a reachable server logs offline (one warning). ``name``/``group``: the run's name and
    W&B group (see :func:`report_run_name`, :func:`runs_group`).
    ``directory``: where the run's ``wandb/`` folder goes (the report's directory, so the run lives with
    the report rather than in whatever directory the command ran from); ``None``: W&B's default.
    """
    import wandb

    mode = wandb_mode(mode, Path(directory or ".") / "wandb")
    try:
        run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            group=group,
            job_type="report",
            mode=mode,  # type: ignore[arg-type]
            config=dict(config or {}),
            reinit="finish_previous",
            dir=str(directory) if directory is not None else None,
        )
    except Exception as e:  # the local report is complete without it
        warn_wandb_failure("starting the report run", e)
        return None
    where: str | None = None
    try:
        run.log({TABLE_KEY: wandb.Table(dataframe=_table_frame(df))})
        run.log({f"plots/{key}": wandb.Image(str(path), caption=key) for key, path in plots.items()})
        best = df.iloc[0]
        metric = df.attrs.get("primary_metric", "accuracy")
        run.summary["recommendation"] = recommendation_text
        run.summary["best/name"] = str(best["name"])
        run.summary[f"best/{metric}"] = float(best[metric])
        run.summary["best/cost_per_1k_usd"] = float(best["cost_per_1k_usd"])
        run.summary["best/latency_p95_ms"] = float(best["latency_p95_ms"])
        for label, path in (report_files or {}).items():
            if Path(path).is_file():
                run.save(str(path), base_path=str(Path(path).parent), policy="now")
                log.debug("attached %s (%s) to the W&B run", path, label)
        where = run.url if mode == "online" else str(Path(run.dir).parent)  # run.dir is its files/ subdir
        if build_report and mode == "online":
            _build_wandb_report(run, project, entity, recommendation_text, list(plots))
        elif build_report:
            log.info("W&B Report page skipped: W&B is %s (needs WANDB_MODE=online)", mode)
    except Exception as e:  # the local report is complete without it
        warn_wandb_failure("logging the report", e)
        where = None
    finally:
        try:
            wandb.finish()
        except Exception as e:
            warn_wandb_failure("closing the report run", e)
    return where


def _build_wandb_report(
    run: Any, project: str, entity: str | None, recommendation_text: str, plot_keys: list[str]
) -> str | None:
    """A W&B Report (``wandb_workspaces.reports.v2``) showing the table and plots; None when unavailable."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        log.info("W&B Report page skipped: `pip install wandb-workspaces` to build one")
        return None
    try:
        runset = wr.Runset(entity=entity or run.entity, project=project, name="slmforge report run")
        report = wr.Report(
            entity=entity or run.entity,
            project=project,
            title="slmforge: fine-tuned small models vs prompted large ones",
            description=recommendation_text,
            blocks=[
                wr.H1("Recommendation"),
                wr.P(recommendation_text),
                wr.H1("Leaderboard and trade-offs"),
                wr.PanelGrid(
                    runsets=[runset],
                    panels=[
                        wr.WeavePanelSummaryTable(table_name=TABLE_KEY),
                        wr.MediaBrowser(media_keys=[f"plots/{k}" for k in plot_keys]),
                    ],
                ),
            ],
        )
        report.save()
        log.info("W&B Report: %s", report.url)
        return str(report.url)
    except Exception as e:  # the API is in preview; a failure here must not lose the local report
        log.warning("W&B Report page not built (%s: %s); the run itself was logged", type(e).__name__, e)
        return None
