"""The Lightning DataModule: tokenised training windows and raw validation examples.

Training yields windows (one optimizer step each, see ``modeling.batching``); validation yields lists of
raw examples because validation runs the task's predictor (label scoring / generation), the same code
``evaluate`` uses, rather than a teacher-forced loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from slmforge.tasks.base import Task
from slmforge.training.batching import (
    EncodedRow,
    WindowCollator,
    WindowSampler,
    class_balance_weights,
    encode_example,
)


def _identity(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return batch


class SLMDataModule(L.LightningDataModule):
    def __init__(
        self,
        task: Task,
        tokenizer: Any,
        train_examples: Sequence[dict[str, Any]],
        validation_examples: Sequence[dict[str, Any]],
        micro_batch_size: int = 8,
        accumulate: int = 2,
        max_length: int = 512,
        pad_multiple: int = 8,
        group_by_length: bool = False,
        eval_batch_size: int = 16,
        seed: int = 0,
        class_balance: float = 0.0,
    ) -> None:
        super().__init__()
        self.task = task
        self.tokenizer = tokenizer
        self.train_examples = list(train_examples)
        self.validation_examples = list(validation_examples)
        self.micro_batch_size = micro_batch_size
        self.accumulate = accumulate
        self.max_length = max_length
        self.pad_multiple = pad_multiple
        self.group_by_length = group_by_length
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.class_balance = float(class_balance)
        self.rows: list[EncodedRow] = []
        self.sampler: WindowSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        if not self.rows:
            self.rows = [
                encode_example(self.task, self.tokenizer, ex, self.max_length) for ex in self.train_examples
            ]
            self.sampler = WindowSampler(
                [len(r.input_ids) for r in self.rows],
                window_size=self.micro_batch_size * self.accumulate,
                seed=self.seed,
                group_by_length=self.group_by_length,
                weights=self._balance_weights(),
            )

    def _balance_weights(self) -> list[float] | None:
        if not self.class_balance:
            return None
        key = self.task.target_key
        if key != "label":
            raise ValueError(
                f"train.class_balance={self.class_balance} needs labelled rows (classification); this task's "
                f"target is '{key}'; set train.class_balance=0"
            )
        return class_balance_weights([ex["label"] for ex in self.train_examples], self.class_balance)

    def token_stats(self) -> dict[str, float]:
        self.setup()
        lengths = [len(r.input_ids) for r in self.rows]
        return {
            "train_rows": len(lengths),
            "mean_tokens": sum(lengths) / len(lengths),
            "max_tokens": max(lengths),
            "supervised_tokens": sum(r.n_supervised for r in self.rows),
            "tokens": sum(lengths),
            "truncated_prompts": sum(r.truncated for r in self.rows),
        }

    def train_dataloader(self) -> DataLoader:
        self.setup()
        assert self.sampler is not None
        if self.trainer is not None:
            self.sampler.set_epoch(self.trainer.current_epoch)
        collate = WindowCollator(
            self.rows, self.tokenizer.pad_token_id, self.micro_batch_size, self.pad_multiple
        )
        return DataLoader(list(self.sampler), batch_size=None, collate_fn=collate, num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.validation_examples, batch_size=self.eval_batch_size, collate_fn=_identity)
