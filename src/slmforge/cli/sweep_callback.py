"""What a Hydra multirun adds to every command: legible job names, and failed or skipped jobs recorded
instead of ending the sweep, with a summary of them at its end.

* Names. A sweep job's folder (``hydra.sweep.subdir`` in conf/hydra/default.yaml), its W&B run and its adapter
  artifact are named after the run name plus the job's overrides (Hydra's ``override_dirname``, made file-name
  safe), so that the jobs of ``-m adapter.r=4,8`` read apart. Keys the run name already shows (model, data,
  adapter, ...) are left out (``hydra.job.config.override_dirname.exclude_keys``). All jobs of one sweep
  share one W&B group of their own: the configured group plus the sweep folder's name (its timestamp).
* Failures. A user error in one job (a model that cannot load offline, a bad data file) must not cancel the
  jobs after it: :func:`record_failed_job` writes ``failed.json`` into the job's folder and the job ends
  normally; :class:`SweepSummary` lists those files when the sweep ends and exits with code 2.
* Skips. A model this machine cannot reach (a hub model offline, an optional model package not installed:
  a ``ModelUnavailableError``) is not a mistake in the sweep: an offline size sweep over
  hub sizes must still finish. :func:`record_skipped_job` writes ``skipped.json`` (the reason and the
  model) instead, the summary lists skipped jobs apart from failed ones, and only failures set exit code 2.

Import-light (omegaconf and hydra only): every command imports it through ``slmforge.cli.common``, which
also registers the ``${slmforge.job_suffix:...}`` resolver that the sweep subdir uses.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from slmforge.errors import EXIT_USER_ERROR, ModelUnavailableError, user_error_message

FAILED_FILE = "failed.json"
SKIPPED_FILE = "skipped.json"
_MAX_SLUG = 100  # characters of overrides in a name; longer ones keep a prefix and a hash of the whole


def hydra_config() -> Any | None:
    """This job's ``hydra`` config node, or None outside ``@hydra.main`` (tests composing configs)."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get()
    except ValueError:
        return None


def is_multirun(hydra_cfg: Any | None) -> bool:
    """Whether a ``hydra`` node (live, or loaded from a run's ``.hydra/hydra.yaml``) is a multirun job's."""
    mode = hydra_cfg.get("mode") if hydra_cfg is not None else None
    return getattr(mode, "name", mode) == "MULTIRUN"


def job_suffix(override_dirname: str | None) -> str:
    """``_<overrides>`` as a file-name-safe name part, or ``""`` for a job without overrides."""
    slug = re.sub(r"[^A-Za-z0-9._=,+-]+", "-", str(override_dirname or "")).strip("-")
    if len(slug) > _MAX_SLUG:
        slug = f"{slug[: _MAX_SLUG - 9]}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"
    return f"_{slug}" if slug else ""


if not OmegaConf.has_resolver("slmforge.job_suffix"):
    OmegaConf.register_new_resolver("slmforge.job_suffix", job_suffix)


def sweep_run_name(run_name: str) -> str:
    """A W&B run's name: ``run_name``, plus the job's overrides in a multirun (its folder name, less the
    job number)."""
    hc = hydra_config()
    if not is_multirun(hc):
        return run_name
    return run_name + job_suffix(hc.job.get("override_dirname"))


def sweep_group(group: str | None, hydra_cfg: Any | None = None) -> str | None:
    """A W&B group: as configured, except that each multirun gets its own, ``<group>-<sweep folder name>``,
    so that a sweep's jobs are not mixed with every other run of the same command and data. A group given
    on the command line (``logger.wandb.group=...``) is kept as it is."""
    hc = hydra_cfg if hydra_cfg is not None else hydra_config()
    if not group or not is_multirun(hc):
        return group
    if any(o.lstrip("+~").split("=", 1)[0] == "logger.wandb.group" for o in hc.overrides.task):
        return group
    return f"{group}-{Path(str(hc.runtime.output_dir)).parent.name}"


def in_multirun() -> bool:
    return is_multirun(hydra_config())


def is_unavailable(error: BaseException) -> bool:
    """Whether a user error says the model cannot be reached from here (see the module docstring), which
    a sweep skips rather than fails."""
    return isinstance(error, ModelUnavailableError)


def record_failed_job(job_dir: Path, error: BaseException) -> Path:
    """``failed.json`` in a failed sweep job's folder: the error and the job's overrides."""
    return _record(
        job_dir / FAILED_FILE, {"error": user_error_message(error), "error_type": type(error).__name__}
    )


def record_skipped_job(job_dir: Path, error: BaseException, model: str | None = None) -> Path:
    """``skipped.json`` in the folder of a sweep job whose model cannot be reached: the reason (with its
    fix), the model's name and the job's overrides."""
    return _record(
        job_dir / SKIPPED_FILE,
        {
            "skipped": True,
            "model": model,
            "reason": user_error_message(error),
            "error_type": type(error).__name__,
        },
    )


def _record(path: Path, info: dict[str, Any]) -> Path:
    hc = hydra_config()
    info["overrides"] = list(hc.overrides.task) if hc is not None else []
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info, indent=2) + "\n")
    return path


class SweepSummary(Callback):
    """At the end of a multirun: one line per job skipped because its model cannot be reached, one line
    per job that failed with a user error, then exit code 2 if any failed (skips alone end with 0).

    Jobs are found by their ``skipped.json`` / ``failed.json`` under the sweep folder (written by the job, in
    whatever process or machine the launcher ran it); files already there when the sweep started are not
    this sweep's.
    """

    def __init__(self) -> None:
        self._before: dict[Path, int] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        self._before = {**_job_files(sweep_dir, FAILED_FILE), **_job_files(sweep_dir, SKIPPED_FILE)}

    def _new(self, sweep_dir: Path, name: str) -> list[Path]:
        now = _job_files(sweep_dir, name)
        return sorted(p for p, mtime in now.items() if self._before.get(p) != mtime)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        skipped, failed = self._new(sweep_dir, SKIPPED_FILE), self._new(sweep_dir, FAILED_FILE)
        lines = []
        if skipped:
            lines.append(
                f"sweep: {len(skipped)} job(s) skipped in {sweep_dir}, their model unreachable from here "
                f"(reason and fix in its {SKIPPED_FILE}):"
            )
            lines += [_summary_line(sweep_dir, p, "reason", with_model=True) for p in skipped]
        if failed:
            lines.append(
                f"sweep: {len(failed)} job(s) failed in {sweep_dir} (error and overrides in its {FAILED_FILE}):"
            )
            lines += [_summary_line(sweep_dir, p, "error") for p in failed]
        if lines:
            print("\n".join(lines), file=sys.stderr, flush=True)
        if failed:
            raise SystemExit(EXIT_USER_ERROR)


def _summary_line(sweep_dir: Path, path: Path, key: str, with_model: bool = False) -> str:
    try:
        info = json.loads(path.read_text())
        text = str(info.get(key, ""))
        model = info.get("model")
    except (OSError, ValueError):
        text, model = "(unreadable)", None
    name = f" [model {model}]" if with_model and model else ""
    return f"  {path.parent.relative_to(sweep_dir)}{name}: {text[:200]}"


def _job_files(sweep_dir: Path, name: str) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sweep_dir.rglob(name)} if sweep_dir.is_dir() else {}


class OutputFolderCheck(Callback):
    """The run (or sweep) folder must be creatable and writable before Hydra creates it: otherwise Hydra's
    own ``mkdir`` fails with a traceback (a read-only disk, a file where a folder should be)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(str(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_writable(str(config.hydra.sweep.dir), "hydra.sweep.dir")


def _check_writable(folder: str, key: str) -> None:
    import os
    import tempfile

    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        print(
            f"error: cannot write the output folder {path} ({reason}); choose a writable folder with "
            f"{key}=<dir> or SLMFORGE_OUTPUTS=<dir>",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_USER_ERROR) from None
