"""Experiment tracking: W&B (offline unless configured) and CSV loggers, built from the ``logger`` group.

Local files never depend on W&B: results.json / predictions.jsonl are written first, then mirrored here, and
W&B can never end a run:

* online logging is decided once, before any compute (:func:`wandb_mode`): without an API key, or with a
  server that does not answer within a few seconds, the run logs offline and one warning line says how to
  ``wandb sync`` it later;
* any exception from a W&B call is warned once and switches W&B off for the rest of that run (the guarded
  logger of :func:`make_loggers`, :func:`log_evaluation`, :func:`log_adapter`, :func:`finish`).

In a Hydra multirun each job's W&B run is named after its overrides and grouped with its own sweep only
(:func:`~slmforge.cli.sweep_callback.sweep_run_name`, :func:`~slmforge.cli.sweep_callback.sweep_group`).
``finish()`` closes the W&B run at the end of every job, so each job of a multirun is its own run.

Import-light (no torch or Lightning at import): ``slmforge-report`` uses the mode and warning helpers.
"""

from __future__ import annotations

import configparser
import functools
import logging
import netrc
import os
import re
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from slmforge.cli.sweep_callback import sweep_group, sweep_run_name

if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger

    from slmforge.records import PredictionRow, ResultsRecord

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
ONLINE_PROBE_TIMEOUT_S = 5.0

# (base URL, key configured) -> why online logging cannot work (None: it can). One probe per process.
_online_problems: dict[tuple[str, bool], str | None] = {}
_warned: set[str] = set()


def warn_once(kind: str, message: str) -> None:
    """One ``warning: ...`` line on stderr per kind and process (a sweep or compare opens many runs)."""
    if kind in _warned:
        log.debug("warning (already shown once): %s", message)
        return
    _warned.add(kind)
    print(f"warning: {message}", file=sys.stderr, flush=True)


def wandb_mode(mode: str | None, wandb_dir: str | Path) -> str:
    """W&B's mode for a run writing under ``wandb_dir``: ``online`` only when it can work, else ``offline``.

    ``None`` defers to ``WANDB_MODE``. Called when the loggers are built, before any evaluation or training,
    so that no compute is lost to a login error later.
    """
    mode = str(mode or os.environ.get("WANDB_MODE") or "offline")
    if mode != "online":
        return mode
    problem = online_problem()
    if problem is None:
        return "online"
    warn_once(
        "offline",
        f"W&B online logging unavailable ({problem}); logging offline to {wandb_dir}, "
        f"sync later with: wandb sync {Path(wandb_dir) / 'offline-run-*'}",
    )
    return "offline"


def online_problem(timeout_s: float = ONLINE_PROBE_TIMEOUT_S) -> str | None:
    """Why W&B online logging cannot work here (no API key, server unreachable), or None when it can."""
    base_url = _setting("WANDB_BASE_URL", "base_url") or DEFAULT_BASE_URL
    has_key = _has_api_key(base_url)
    key = (base_url, has_key)
    if key not in _online_problems:
        if not has_key:
            _online_problems[key] = "no API key configured: run `wandb login` or set WANDB_API_KEY"
        else:
            error = _server_error(base_url, timeout_s)
            _online_problems[key] = None if error is None else f"{base_url} unreachable: {error}"
    return _online_problems[key]


def _setting(env_var: str, name: str) -> str | None:
    """A W&B setting from its environment variable, else from W&B's global settings file."""
    if os.environ.get(env_var):
        return os.environ[env_var]
    config_dir = Path(os.environ.get("WANDB_CONFIG_DIR") or Path.home() / ".config" / "wandb")
    parser = configparser.ConfigParser()
    try:
        parser.read(config_dir / "settings")
    except (OSError, configparser.Error):
        return None
    return parser.get("default", name, fallback=None) or None


def _has_api_key(base_url: str) -> bool:
    """Whether W&B would find credentials for ``base_url``: the environment, the settings file or netrc."""
    if _setting("WANDB_API_KEY", "api_key") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    if os.environ.get("NETRC"):
        paths = [Path(os.environ["NETRC"]).expanduser()]
    else:
        paths = [Path.home() / ".netrc", Path.home() / "_netrc"]
    parts = urlsplit(base_url)
    for path in paths:
        try:
            entries = netrc.netrc(str(path))
        except (OSError, netrc.NetrcParseError):
            continue
        if any(entries.authenticators(host) for host in {parts.netloc, parts.hostname} if host):
            return True
    return False


def _server_error(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers HTTP at all (any status is an answer), else why not. The probe runs in a
    daemon thread so that a hanging name lookup is bounded by ``timeout_s`` too."""
    result: list[str | None] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
            result.append(None)
        except urllib.error.HTTPError:
            result.append(None)
        except Exception as e:  # refused, timed out, no such host, not HTTP: all mean "not reachable"
            result.append(str(getattr(e, "reason", e)) or type(e).__name__)

    thread = threading.Thread(target=probe, name="wandb-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    return result[0] if result else f"no answer within {timeout_s:g} s"


def warn_wandb_failure(what: str, e: BaseException) -> None:
    warn_once(
        "failure",
        f"W&B logging failed while {what} ({type(e).__name__}: {str(e)[:300]}); W&B is off for the rest "
        f"of this run, local results are unaffected",
    )


@functools.cache
def _guarded_wandb_logger() -> type:
    """Lightning's ``WandbLogger`` whose every W&B call is guarded: the first exception is warned once and
    turns it into a no-op for the rest of the run (``experiment`` is then None). Built on first use, so that
    importing this module does not import Lightning and torch."""
    from lightning.pytorch.loggers import WandbLogger

    def guarded(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(method)
            def call(self: Any, *args: Any, **kwargs: Any) -> Any:
                if self.broken:
                    return None
                try:
                    return method(self, *args, **kwargs)
                except Exception as e:
                    self.broken = True
                    warn_wandb_failure(what, e)
                    return None

            return call

        return wrap

    class GuardedWandbLogger(WandbLogger):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.broken = False
            if self._wandb_init.get("anonymous") is None:  # W&B warns about the key even when unset
                self._wandb_init.pop("anonymous", None)

        @property
        def experiment(self) -> Any:
            if self.broken:
                return None
            try:
                return WandbLogger.experiment.fget(self)  # type: ignore[attr-defined]
            except Exception as e:
                self.broken = True
                warn_wandb_failure("starting the run", e)
                return None

        @guarded("logging hyperparameters")
        def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
            super().log_hyperparams(*args, **kwargs)

        @guarded("logging metrics")
        def log_metrics(self, *args: Any, **kwargs: Any) -> None:
            super().log_metrics(*args, **kwargs)

        @guarded("recording a checkpoint")
        def after_save_checkpoint(self, *args: Any, **kwargs: Any) -> None:
            super().after_save_checkpoint(*args, **kwargs)

        @guarded("finishing the run")
        def finalize(self, *args: Any, **kwargs: Any) -> None:
            super().finalize(*args, **kwargs)

        def call(self, what: str, fn: Callable[[Any], None]) -> None:
            """``fn(run)`` on the live W&B run, guarded like every other call; skipped once W&B is off."""
            run = self.experiment
            if run is None:
                return
            try:
                fn(run)
            except Exception as e:
                self.broken = True
                warn_wandb_failure(what, e)

    return GuardedWandbLogger


def make_loggers(
    logger_cfg: dict[str, Any] | None,
    run_dir: str | Path,
    run_name: str,
    config: dict[str, Any],
    tags: list[str],
    job_type: str = "train",
    resume_id: str | None = None,
) -> list[Logger]:
    """The configured loggers. The W&B run is named ``run_name`` (plus the job's overrides in a multirun),
    grouped by ``logger.wandb.group`` (one group per sweep in a multirun), and written under ``run_dir``."""
    loggers: list[Logger] = []
    cfg = dict(logger_cfg or {})
    if "wandb" in cfg:
        wb = dict(cfg["wandb"] or {})
        mode = wandb_mode(wb.get("mode"), Path(run_dir) / "wandb")
        if mode != "disabled":
            loggers.append(
                _guarded_wandb_logger()(
                    name=sweep_run_name(run_name),
                    save_dir=str(run_dir),
                    project=wb.get("project", "slmforge"),
                    entity=wb.get("entity"),
                    group=sweep_group(wb.get("group")),
                    tags=[str(t) for t in tags],
                    mode=mode,
                    job_type=job_type,
                    config=config,
                    log_model=False,
                    # a resumed training run continues its W&B run instead of starting another
                    **({"id": resume_id, "resume": "allow"} if resume_id else {}),
                )
            )
    if "csv" in cfg:
        from lightning.pytorch.loggers import CSVLogger

        loggers.append(CSVLogger(save_dir=str(run_dir), name="csv", version=""))
    return loggers


def _wandb_logger(loggers: list[Logger]) -> Any | None:
    if not loggers:  # nothing to look for (and no reason to import Lightning)
        return None
    return next((lg for lg in loggers if isinstance(lg, _guarded_wandb_logger())), None)


def wandb_run(loggers: list[Logger]) -> Any | None:
    """The live W&B run of these loggers; None without one, or once W&B failed in this run."""
    lg = _wandb_logger(loggers)
    return None if lg is None else lg.experiment


def predictions_to_log(logger_cfg: Any) -> int:
    """Rows of the predictions table to upload: ``logger.wandb.log_predictions`` (0 = none; 200 by default)."""
    wb = (dict(logger_cfg or {}).get("wandb")) or {}
    return int(wb.get("log_predictions", 200) or 0)


def log_evaluation(
    loggers: list[Logger],
    record: ResultsRecord,
    rows: list[PredictionRow],
    prefix: str,
    max_rows: int = 200,
) -> None:
    """Scalars of a results record (as ``<prefix>/<metric>``) and, when ``max_rows`` > 0, a predictions
    table of at most that many rows (``<prefix>/predictions``), to W&B."""
    lg = _wandb_logger(loggers)
    if lg is None:
        return

    def log_it(run: Any) -> None:
        import wandb

        scalars = {f"{prefix}/{k}": v for k, v in record.metrics.items() if isinstance(v, int | float)}
        scalars.update({f"{prefix}/latency_{k}_ms": v for k, v in record.latency_ms.items()})
        scalars[f"{prefix}/examples_per_s"] = record.throughput.get("examples_per_s", 0.0)
        run.log(scalars)
        run.summary.update(scalars)
        if max_rows > 0:
            columns = ["id", "text", "gold", "pred", "confidence", "correct", "latency_ms"]
            table = wandb.Table(columns=columns)
            for r in rows[:max_rows]:
                table.add_data(
                    r.id, r.text[:500], str(r.gold), str(r.pred), r.confidence, r.correct, r.latency_ms
                )
            run.log({f"{prefix}/predictions": table})

    lg.call(f"logging the {prefix} evaluation", log_it)


def log_summary(loggers: list[Logger], values: dict[str, Any], what: str) -> None:
    """Scalars into the W&B run's summary (nothing without a W&B logger; a W&B failure is a warning)."""
    lg = _wandb_logger(loggers)
    if lg is None:
        return
    lg.call(f"logging {what}", lambda run: run.summary.update(values))


def artifact_name(name: str) -> str:
    """A W&B artifact name (letters, digits, ``-``, ``_``, ``.``; at most 128 characters)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:128]


def log_adapter(loggers: list[Logger], adapter_dir: Path, name: str) -> None:
    """The adapter folder as a ``model`` artifact named ``adapter-<run name>`` (the W&B run's name, so each
    job of a sweep has its own)."""
    lg = _wandb_logger(loggers)
    if lg is None or not adapter_dir.exists():
        return

    def log_it(run: Any) -> None:
        import wandb

        artifact = wandb.Artifact(name=artifact_name(f"adapter-{sweep_run_name(name)}"), type="model")
        artifact.add_dir(str(adapter_dir))
        run.log_artifact(artifact)

    lg.call("uploading the adapter", log_it)


def finish(exit_code: int | None = None) -> None:
    """Close the W&B run (if any), so the next multirun job starts its own. ``exit_code`` != 0 marks it as
    failed/interrupted in W&B (130: interrupted by Ctrl-C)."""
    try:
        import wandb

        if wandb.run is not None:
            if exit_code:
                wandb.run.summary["slmforge/status"] = "interrupted" if exit_code == 130 else "failed"
            wandb.finish(exit_code=exit_code)
    except Exception as e:  # tracking must never lose the local results
        warn_wandb_failure("closing the run", e)
