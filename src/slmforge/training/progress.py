"""Training progress as log lines when the output is not a terminal.

Lightning's progress bar redraws one line in place: in a file (``nohup``, CI, a scheduler's job log) it shows
nothing until the end, or a flood of carriage returns. ``progress_bar: auto`` (conf/train.yaml) keeps the bar
on a terminal and otherwise logs a line every ~10% of the optimizer steps and at the last one: step k/N,
the mean loss since the previous line, tokens/s, elapsed time and ETA. Logged through the ``slmforge``
logger, the lines reach the console and the run's log file like the stage timings.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import lightning as L

from slmforge.errors import ConfigError

log = logging.getLogger("slmforge")

# Steps between two lines when Lightning cannot tell the run's length (no epoch or step limit, or a data
# loader without a length): no percentage or ETA then.
_EVERY_N_STEPS_UNBOUNDED = 50


def use_progress_bar(setting: Any, stream: TextIO | None = None) -> bool:
    """Whether Lightning draws its bar: ``true``/``false`` force it on/off; ``auto`` draws it only when
    ``stream`` (default stdout, where Lightning's bars draw) is a terminal."""
    if isinstance(setting, bool):
        return setting
    if str(setting) == "auto":
        return (sys.stdout if stream is None else stream).isatty()
    raise ConfigError(f"progress_bar={setting} is not one of auto, true, false")


class ProgressLog(L.Callback):
    """Logs ``train step k/N (p%), loss, tokens/s, elapsed, ETA`` every ``every`` of the run's optimizer
    steps, at the last step, and where training stops early (rank 0 only). The loss is the mean since the
    previous line; tokens/s needs the module's ``tokens_seen`` counter (CausalLMModule keeps one)."""

    def __init__(self, every: float = 0.1) -> None:
        self.every = every

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self.total = int(total) if math.isfinite(total) else None
        self.interval = max(1, math.ceil(self.total * self.every)) if self.total else _EVERY_N_STEPS_UNBOUNDED
        self.start_step = self.logged_step = trainer.global_step  # a resumed run counts from where it was
        self.start_tokens = getattr(pl_module, "tokens_seen", None)
        self.t0 = time.perf_counter()
        self.losses: list[float] = []

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            self.losses.append(float(loss))
        step = trainer.global_step
        due = step // self.interval > self.logged_step // self.interval or step == self.total
        if step > self.logged_step and due:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > self.logged_step:  # stopped between two lines (early stopping)
            self._log(trainer, pl_module)

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = self.logged_step = trainer.global_step
        if not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self.t0
        parts = [f"step {step}/{self.total} ({step / self.total:.0%})" if self.total else f"step {step}"]
        if self.losses:
            parts.append(f"loss {sum(self.losses) / len(self.losses):.4f}")
            self.losses.clear()
        tokens = getattr(pl_module, "tokens_seen", None)
        if tokens is not None and self.start_tokens is not None:
            parts.append(f"{(tokens - self.start_tokens) / max(elapsed, 1e-9):,.0f} tokens/s")
        parts.append(f"elapsed {_hms(elapsed)}")
        done = step - self.start_step
        if self.total and done:
            parts.append(f"ETA {_hms(elapsed / done * (self.total - step))}")
        log.info("train %s", ", ".join(parts))


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
