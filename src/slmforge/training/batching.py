"""Tokenised training rows and how they become micro-batches.

A row is ``prompt_ids + target_ids + [eos]`` with labels ``-100`` over the prompt: the loss covers only the
answer and the EOS (so the model learns to stop). Prompt and target are tokenised separately and
concatenated, exactly as label scoring does at inference, so training and scoring see the same tokens.

The training loader yields one *window* per optimizer step: ``accumulate`` micro-batches whose total
number of supervised tokens is known up front. The module divides each micro-batch's summed loss by
that total, so gradient accumulation gives exactly the gradient of one large batch (a per-micro-batch
mean would weight short answers more). Within a window, rows are sorted by length before being cut into
micro-batches, which cuts padding without changing the gradient.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Sampler

from slmforge.prompting import fit_prompt, render_prompt
from slmforge.tasks.base import Task

IGNORE_INDEX = -100


@dataclass
class EncodedRow:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False  # the prompt was cut to fit (counted and reported per run)

    @property
    def n_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_example(
    task: Task, tokenizer: Any, example: dict[str, Any], max_length: int, shots: Sequence[dict] = ()
) -> EncodedRow:
    """Prompt + answer + EOS, prompt masked. Over-long prompts are cut in the middle (``fit_prompt``);
    the answer is never cut: a truncated target would teach the model to stop early."""
    prompt = render_prompt(tokenizer, task.messages(example, shots))
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(task.target(example), add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]
    full = len(prompt_ids)
    prompt_ids = fit_prompt(prompt_ids, max_length - len(target_ids))
    return EncodedRow(
        prompt_ids + target_ids,
        [IGNORE_INDEX] * len(prompt_ids) + target_ids,
        truncated=len(prompt_ids) < full,
    )


def pad_rows(rows: Sequence[EncodedRow], pad_id: int, multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad to the longest row (rounded up to ``multiple_of``: fewer distinct shapes, which GPUs like)."""
    longest = max(len(r.input_ids) for r in rows)
    if multiple_of > 1:
        longest = -(-longest // multiple_of) * multiple_of
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        ids[i, :n] = torch.tensor(r.input_ids)
        labels[i, :n] = torch.tensor(r.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


class WindowSampler(Sampler[list[int]]):
    """Yields the row indices of one optimizer step (``micro_batch_size * accumulate`` rows) at a time.

    Seeded and epoch-aware (``set_epoch``), so resuming from a checkpoint replays the same order.
    With ``group_by_length``, rows are first bucketed by length in mega-batches of 50 windows: much less
    padding at the cost of slightly less random batches.

    ``weights`` (one per row, e.g. :func:`class_balance_weights`): each epoch draws as many rows as there
    are, with replacement, row i with probability proportional to ``weights[i]``. Resampling rather than
    weighting the loss keeps every step's gradient an ordinary mean over the rows it holds (the window's
    supervised-token normalisation stays exact) and costs nothing per step.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        window_size: int,
        seed: int = 0,
        shuffle: bool = True,
        group_by_length: bool = False,
        drop_last: bool = False,
        weights: Sequence[float] | None = None,
    ) -> None:
        if weights is not None and len(weights) != len(lengths):
            raise ValueError(f"{len(weights)} weights for {len(lengths)} rows")
        self.weights = None if weights is None else [float(w) for w in weights]
        self.lengths = list(lengths)
        self.window_size = window_size
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed + self.epoch)
        if self.weights is not None:
            idx = rng.choices(idx, weights=self.weights, k=len(idx))
        elif self.shuffle:
            rng.shuffle(idx)
        if self.group_by_length:
            mega = self.window_size * 50
            idx = [
                i
                for start in range(0, len(idx), mega)
                for i in sorted(idx[start : start + mega], key=lambda j: -self.lengths[j])
            ]
        windows = [idx[s : s + self.window_size] for s in range(0, len(idx), self.window_size)]
        if self.drop_last and windows and len(windows[-1]) < self.window_size:
            windows.pop()
        if self.group_by_length and self.shuffle:
            rng.shuffle(windows)
        yield from windows

    def __len__(self) -> int:
        n = len(self.lengths) // self.window_size
        if not self.drop_last and len(self.lengths) % self.window_size:
            n += 1
        return n


def class_balance_weights(labels: Sequence[Any], power: float) -> list[float] | None:
    """Sampling weights ``count(label) ** -power`` per row: ``power`` 0 keeps the data's label mix (None),
    1 draws every class equally often, 0.5 (the square root) lifts small classes without repeating their few
    rows as often as full balance does."""
    if not 0.0 <= power <= 1.0:
        raise ValueError(f"train.class_balance={power} must be in [0, 1]")
    if power == 0.0:
        return None
    counts: dict[Any, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    return [counts[lab] ** -power for lab in labels]


class WindowCollator:
    """A window of rows -> ``{"micro_batches": [...], "n_supervised": int, "n_tokens": int}``."""

    def __init__(self, rows: Sequence[EncodedRow], pad_id: int, micro_batch_size: int, pad_multiple: int = 1):
        self.rows = rows
        self.pad_id = pad_id
        self.micro_batch_size = micro_batch_size
        self.pad_multiple = pad_multiple

    def __call__(self, window: list[list[int]] | list[int]) -> dict[str, Any]:
        # DataLoader with batch_sampler=None and batch_size=None hands us the index list itself.
        indices = window[0] if window and isinstance(window[0], list) else window
        rows = sorted((self.rows[i] for i in indices), key=lambda r: len(r.input_ids))
        micro = [
            pad_rows(rows[s : s + self.micro_batch_size], self.pad_id, self.pad_multiple)
            for s in range(0, len(rows), self.micro_batch_size)
        ]
        return {
            "micro_batches": micro,
            "n_supervised": sum(r.n_supervised for r in rows),
            "n_tokens": sum(len(r.input_ids) for r in rows),
        }
