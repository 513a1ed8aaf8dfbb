"""Progress lines for output that is not a terminal, and when Lightning's bar is drawn instead."""

from __future__ import annotations

import io
import logging
import os
import re

import lightning as L
import pytest
from lightning.pytorch.demos.boring_classes import BoringModel

from slmforge.errors import ConfigError
from slmforge.training.progress import ProgressLog, use_progress_bar

_STEP = re.compile(
    r"^train step (\d+)/(\d+) \((\d+)%\), loss \d+\.\d{4}, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$"
)


class _StopAt(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _fit(caplog: pytest.LogCaptureFixture, *callbacks: L.Callback, **trainer_kw: object) -> list[str]:
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[ProgressLog(), *callbacks], **trainer_kw,
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="slmforge"):
        trainer.fit(BoringModel())
    return [r.getMessage() for r in caplog.records if r.name == "slmforge"]


def test_a_line_every_tenth_of_the_run_and_at_the_last_step(caplog: pytest.LogCaptureFixture) -> None:
    lines = _fit(caplog, max_steps=20)
    steps = [_STEP.match(line) for line in lines]
    assert all(steps), lines
    assert [int(m[1]) for m in steps] == list(range(2, 21, 2))
    assert {int(m[2]) for m in steps} == {20}
    assert steps[-1][3] == "100" and lines[-1].endswith("ETA 0:00:00")


def test_steps_not_batches_with_gradient_accumulation(caplog: pytest.LogCaptureFixture) -> None:
    # 3 batches per optimizer step: 5 steps of 15 batches; 10% of 5 steps rounds up to every step.
    lines = _fit(caplog, max_steps=5, accumulate_grad_batches=3)
    assert [int(_STEP.match(line)[1]) for line in lines] == [1, 2, 3, 4, 5]  # type: ignore[index]


def test_a_run_stopped_early_logs_where_it_stopped(caplog: pytest.LogCaptureFixture) -> None:
    lines = _fit(caplog, _StopAt(7), max_steps=20)
    assert [int(_STEP.match(line)[1]) for line in lines] == [2, 4, 6, 7]  # type: ignore[index]
    assert "step 7/20 (35%)" in lines[-1]


def test_progress_bar_setting() -> None:
    assert use_progress_bar(True, io.StringIO()) is True
    assert use_progress_bar(False, io.StringIO()) is False
    assert use_progress_bar("auto", io.StringIO()) is False  # a file or a pipe: progress lines instead
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w") as terminal:
            assert use_progress_bar("auto", terminal) is True
    finally:
        os.close(leader)
    with pytest.raises(ConfigError, match="progress_bar=yes is not one of auto, true, false"):
        use_progress_bar("yes")
