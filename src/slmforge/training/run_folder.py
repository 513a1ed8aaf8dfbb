"""A run folder is never silently overwritten, never shared by two live runs, and a resume continues it.

- :func:`claim` locks the folder (``.lock``, ``fcntl``: a second concurrent run into it fails at once) and
  refuses a folder that already holds a run unless the command resumes it (``ckpt_path=last``) or says
  ``overwrite=true`` (the old run is moved aside to ``<folder>.backup-<time>``, not deleted).
- A resume must keep the run's settings: its saved config is compared with this one, and any difference
  beyond the resumable keys (epochs, max_steps, logging, ...) is refused with the keys named.
- The job's config is saved by slmforge (Hydra's own copy is switched off, ``hydra.output_subdir: null``):
  only after these checks, so a refused command never overwrites the run's saved config; a resume saves its
  own beside it (``.hydra/resume-<n>/``).
- Checkpoints are written atomically (:class:`AtomicCheckpointIO`): a kill during the write leaves the
  previous checkpoint whole.
- The CSV metrics history of a resumed run is appended to, not replaced (:func:`merge_metrics_history`).
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, OmegaConf

from slmforge.errors import ConfigError
from slmforge.records import ADAPTER_DIR, CHECKPOINTS_DIR, PREDICTORS_DIR, RESULTS_FILE, RUN_SUMMARY_FILE

LOCK_FILE = ".lock"
# What may change when a run is resumed: how long it trains, how often it checkpoints/validates, logging,
# evaluation batch sizes. Anything else (data, model, adapter, learning rate...) would make it another run.
RESUMABLE = (
    "ckpt_path", "overwrite", "train.epochs", "train.max_steps", "train.checkpoint_every_n_steps",
    "train.val_check_interval", "logger", "progress_bar", "tags", "eval.batch_size", "eval.latency_probe_n",
    "hardware.trainer.devices", "paths", "validation",  # data checks: they never change what is trained
)  # fmt: skip
_held: list[IO[str]] = []  # open lock files: released when the process ends, however it ends


def holds_results(run_dir: Path) -> bool:
    return (
        (run_dir / RUN_SUMMARY_FILE).exists()
        or any((run_dir / PREDICTORS_DIR).glob(f"*/{RESULTS_FILE}"))
        or (run_dir / ADAPTER_DIR).exists()
        or any((run_dir / CHECKPOINTS_DIR).glob("*.ckpt"))
    )


def _lock(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    f = (run_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        pid = f.read().strip() or "?"
        f.close()
        raise ConfigError(
            f"{run_dir} is in use by another slmforge process (pid {pid}); wait for it to finish, or leave "
            f"hydra.run.dir unset for a new folder"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _held.append(f)


def _differences(saved: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(saved) | set(new), key=str):
            path = f"{prefix}{key}"
            if any(path == r or path.startswith(r + ".") for r in RESUMABLE):
                continue
            out += _differences(saved.get(key), new.get(key), path + ".")
        return out
    return [] if saved == new else [prefix.rstrip(".")]


def claim(cfg: DictConfig, run_dir: Path, *, resuming: bool) -> None:
    """Lock ``run_dir`` and decide whether this command may write into it (see the module docstring)."""
    _lock(run_dir)
    saved = run_dir / ".hydra" / "config.yaml"
    if resuming:
        if saved.exists():
            old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
            new = OmegaConf.to_container(cfg, resolve=False)
            changed = _differences(old, new)
            if changed:
                raise ConfigError(
                    f"resume refused: this command's config differs from the run's saved config "
                    f"({saved}) in {changed[:8]}; only {list(RESUMABLE[2:7])}, logging and evaluation batch "
                    f"sizes may change on resume. Resume with the run's settings, or start a new run"
                )
        save_job_config(cfg, run_dir, resume=True)
        return
    if holds_results(run_dir):
        if not cfg.get("overwrite"):
            when = dt.datetime.fromtimestamp(run_dir.stat().st_mtime).strftime("%Y-%m-%d %H:%M")
            raise ConfigError(
                f"hydra.run.dir={run_dir} already holds a run (last written {when}); nothing was changed. "
                f"Choose: a new folder (leave hydra.run.dir unset), resume it (ckpt_path=last), or "
                f"overwrite=true (the old run is moved to {run_dir.name}.backup-<time> beside it)"
            )
        backup = run_dir.with_name(f"{run_dir.name}.backup-{time.strftime('%Y%m%d-%H%M%S')}")
        backup.mkdir()
        for p in run_dir.iterdir():
            if p.name == LOCK_FILE or p.suffix == ".log":
                continue
            shutil.move(str(p), backup / p.name)
    save_job_config(cfg, run_dir)


def save_job_config(cfg: DictConfig, run_dir: Path, resume: bool = False) -> Path:
    """What Hydra saves under ``.hydra/`` (config, hydra settings, overrides), written by slmforge after
    the run folder checks; a resume writes its own copy beside the run's (``.hydra/resume-<n>/``)."""
    target = run_dir / ".hydra"
    if resume and (target / "config.yaml").exists():
        n = 1 + sum(1 for p in target.glob("resume-*") if p.is_dir())
        target = target / f"resume-{n}"
    target.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, target / "config.yaml")
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        OmegaConf.save(
            OmegaConf.create({"hydra": OmegaConf.to_container(hc, resolve=False)}), target / "hydra.yaml"
        )
        OmegaConf.save(OmegaConf.create(list(hc.overrides.task)), target / "overrides.yaml")
    except ValueError:  # outside @hydra.main
        pass
    return target


def latest_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run a resumed run continues (``wandb/<offline->run-<time>-<id>`` folders)."""
    runs = sorted((run_dir / "wandb").glob("*run-*-*"), key=lambda p: p.stat().st_mtime)
    runs = [p for p in runs if p.is_dir() and not p.is_symlink() and p.name != "latest-run"]
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def start_metrics_part(run_dir: Path) -> Path | None:
    """Before a resume: keep the CSV history so far (Lightning's CSV logger starts its file afresh)."""
    current = run_dir / "csv" / "metrics.csv"
    if not current.exists():
        return None
    n = 1 + len(list(current.parent.glob("metrics.part-*.csv")))
    part = current.with_name(f"metrics.part-{n}.csv")
    current.rename(part)
    return part


def merge_metrics_history(run_dir: Path) -> None:
    """After a resume: ``csv/metrics.csv`` = every earlier part, then this session's rows (columns united)."""
    folder = run_dir / "csv"
    parts = sorted(folder.glob("metrics.part-*.csv"), key=lambda p: int(p.stem.rsplit("-", 1)[-1]))
    if not parts:
        return
    current = folder / "metrics.csv"
    files = [*parts, current] if current.exists() else parts
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for f in files:
        with f.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields += [c for c in reader.fieldnames or [] if c not in fields]
            rows += list(reader)
    tmp = current.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(current)
    for p in parts:
        p.unlink()


def atomic_checkpoint_io() -> Any:
    """A Lightning CheckpointIO that writes to a temporary file and renames it into place."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    class AtomicCheckpointIO(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
            path = Path(path)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            super().save_checkpoint(checkpoint, tmp, storage_options)
            delay = float(os.environ.get("SLMFORGE_TEST_CHECKPOINT_DELAY_S", "0") or 0)
            if delay:  # tests only: hold the half-done write open so a kill -9 can land in it
                time.sleep(delay)
            os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half

    return AtomicCheckpointIO()
