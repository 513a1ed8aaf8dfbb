"""What every command shares: the one exit path, the run folder, and W&B closed at the end of each job.

Kept import-light (no torch, Lightning or transformers) so that ``--help``, ``--cfg job`` and shell
completion answer in well under two seconds.
"""

from __future__ import annotations

import logging
import shutil
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from slmforge.cli.sweep_callback import in_multirun, is_unavailable, record_failed_job, record_skipped_job
from slmforge.errors import EXIT_USER_ERROR, SlmforgeError, user_error_message

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("slmforge")

# Warnings that say nothing actionable to a user of slmforge (each checked: they come from library
# internals, not from anything a config can change). Filtered in every command, nowhere else.
_BENIGN_WARNINGS = (
    r".*does not have many workers.*",  # Lightning: validation runs the predictor, not a DataLoader
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",
    r".*torch.utils._pytree._register_pytree_node.*",
    r".*`resume_download` is deprecated.*",
    r".*TRANSFORMERS_CACHE.*",
    r".*GPU available but not used.*",
    r".*You are using `torch.load` with `weights_only=False`.*",
    r".*LeafSpec.*is deprecated.*",
    r".*predict_dataloader.*",
    r".*is_gradient_checkpointing.*is deprecated.*",  # transformers, called by peft
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning's pytree shim on torch 2.13
)


def filter_benign_warnings() -> None:
    for pattern in _BENIGN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_dir_of(cfg: DictConfig) -> Path:
    """This job's output folder (Hydra's run or sweep subdir; ``paths.run_dir`` outside @hydra.main)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside @hydra.main (tests composing configs directly)
        return Path(cfg.paths.run_dir)


def command(fn: F) -> F:
    """Wrap a command's body: benign warnings filtered, W&B closed in ``finally`` (each multirun job its
    own run), user errors as one ``error: ...`` line with exit code 2, and a run folder that a failed
    command left empty (only Hydra's bookkeeping) removed. In a multirun a user error ends only its job:
    the job writes ``failed.json`` and returns None, and the sweep's summary exits with code 2 at its end
    (an exit here would cancel the jobs not yet run). A model this machine cannot reach (``is_unavailable``:
    a hub model offline, an optional package missing) is a skip in a multirun, not a failure: one
    ``skipped: ...`` line, ``skipped.json``, and the sweep's exit code is left alone."""

    @wraps(fn)
    def wrapper(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        filter_benign_warnings()
        try:
            return fn(cfg, *args, **kwargs)
        except SlmforgeError as e:
            _finish_tracking()
            if in_multirun() and is_unavailable(e):
                print(f"skipped: {user_error_message(e)}", file=sys.stderr, flush=True)
                record_skipped_job(run_dir_of(cfg), e, model=_model_name(cfg))
                return None
            print(f"error: {user_error_message(e)}", file=sys.stderr, flush=True)
            if in_multirun():
                record_failed_job(run_dir_of(cfg), e)
                return None
            _remove_if_empty(cfg)
            raise SystemExit(EXIT_USER_ERROR) from None
        finally:
            _finish_tracking()

    return wrapper  # type: ignore[return-value]


def _model_name(cfg: DictConfig) -> str | None:
    model = cfg.get("model") if isinstance(cfg, DictConfig) else None
    return str(model.get("name")) if isinstance(model, DictConfig) and model.get("name") else None


def _finish_tracking() -> None:
    if "wandb" not in sys.modules:
        return
    from slmforge.tracking import finish

    finish()


_BOOKKEEPING = {".hydra", ".lock"}


def _remove_if_empty(cfg: DictConfig) -> None:
    """A run folder holding nothing but Hydra's bookkeeping and an empty log is noise after a failure."""
    try:
        run_dir = run_dir_of(cfg)
    except Exception:
        return
    if not run_dir.is_dir():
        return
    for p in run_dir.iterdir():
        if p.name in _BOOKKEEPING:
            continue
        if p.is_file() and p.suffix == ".log":
            continue
        if p.is_dir() and not any(p.rglob("*")):
            continue
        return  # something real was written: keep everything
    shutil.rmtree(run_dir, ignore_errors=True)
