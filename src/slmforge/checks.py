"""Every value a run depends on, checked before any compute; all problems reported together.

litgpt's ``validate_args`` habit: a run with ``train.lr=abc adapter.r=-1`` must say both at once, in one
``error:`` line, before the zero-shot evaluation starts -- not one at a time after minutes of work.
Types and ranges only; whether data files parse is the data layer's job (it fails just as early).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from slmforge.errors import ConfigError


def _number(problems: list[str], key: str, value: Any, *, kind: type = float) -> float | None:
    if isinstance(value, bool) or value is None:
        problems.append(f"{key}={value!r} is not a number")
        return None
    try:
        x = kind(value)
    except (TypeError, ValueError):
        problems.append(f"{key}={value!r} is not {'an integer' if kind is int else 'a number'}")
        return None
    if kind is int and float(value) != x:
        problems.append(f"{key}={value!r} is not an integer")
        return None
    if not math.isfinite(float(x)):
        problems.append(f"{key}={value!r} is not finite")
        return None
    return float(x)


def _check(problems: list[str], key: str, value: Any, rule: str, *, kind: type = float) -> None:
    """``rule``: '>0', '>=0', '>=1', '[0,1)', '[0,1]', '>=-1' (the -1 = 'no cap' convention)."""
    x = _number(problems, key, value, kind=kind)
    if x is None:
        return
    ok = {
        ">0": x > 0,
        ">=0": x >= 0,
        ">=1": x >= 1,
        "[0,1)": 0 <= x < 1,
        "[0,1]": 0 <= x <= 1,
        ">=-1": x >= -1 and x != 0,
    }[rule]
    if not ok:
        say = {
            ">0": "must be > 0",
            ">=0": "must be >= 0",
            ">=1": "must be >= 1",
            "[0,1)": "must be in [0, 1)",
            "[0,1]": "must be in [0, 1]",
            ">=-1": "must be -1 (no cap) or >= 1",
        }[rule]
        problems.append(f"{key}={value!r} {say}")


def _writable(problems: list[str], key: str, folder: Path) -> None:
    """The nearest existing parent must be writable (the run folder may not exist yet)."""
    p = folder.resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not os.access(p, os.W_OK):
        problems.append(f"{key}: cannot write to {p} (read-only?); choose another folder with {key}=<dir>")


def check_run_config(cfg: DictConfig, run_dir: Path | None = None, *, training: bool = True) -> None:
    """Raise one :class:`ConfigError` listing every bad value of ``cfg`` (nothing is computed before)."""
    problems: list[str] = []
    if training and "train" in cfg:
        t = cfg.train
        _check(problems, "train.lr", t.get("lr"), ">0")
        _check(problems, "train.epochs", t.get("epochs"), ">=1", kind=int)
        _check(problems, "train.max_steps", t.get("max_steps"), ">=-1", kind=int)
        _check(problems, "train.micro_batch_size", t.get("micro_batch_size"), ">=1", kind=int)
        _check(problems, "train.accumulate", t.get("accumulate"), ">=1", kind=int)
        _check(problems, "train.weight_decay", t.get("weight_decay"), ">=0")
        _check(problems, "train.warmup_ratio", t.get("warmup_ratio"), "[0,1)")
        _check(problems, "train.min_lr_ratio", t.get("min_lr_ratio"), "[0,1]")
        _check(problems, "train.label_smoothing", t.get("label_smoothing"), "[0,1)")
        if t.get("class_balance") not in (None, 0, 0.0):
            _check(problems, "train.class_balance", t.get("class_balance"), "[0,1]")
            target = str(cfg.get("task", {}).get("_target_", ""))
            if target and not target.endswith("ClassificationTask"):
                problems.append(
                    f"train.class_balance={t.get('class_balance')} balances labels, but task {target.rsplit('.', 1)[-1]} "
                    f"has none; set train.class_balance=0"
                )
        _check(problems, "train.checkpoint_every_n_steps", t.get("checkpoint_every_n_steps"), ">=1", kind=int)
        if t.get("grad_clip") not in (None, 0, 0.0):
            _check(problems, "train.grad_clip", t.get("grad_clip"), ">0")
        if t.get("pack_max_tokens") is not None:
            _check(problems, "train.pack_max_tokens", t.get("pack_max_tokens"), ">=0", kind=int)
        vci = t.get("val_check_interval")
        if (
            vci is not None
            and _number(problems, "train.val_check_interval", vci) is not None
            and float(vci) <= 0
        ):
            problems.append(f"train.val_check_interval={vci!r} must be > 0")
    if training and "adapter" in cfg and str(cfg.adapter.get("kind")) in ("lora", "dora"):
        a = cfg.adapter
        _check(problems, "adapter.r", a.get("r"), ">=1", kind=int)
        _check(problems, "adapter.alpha", a.get("alpha"), ">0")
        _check(problems, "adapter.dropout", a.get("dropout"), "[0,1)")
        if not a.get("target_modules"):
            problems.append(
                "adapter.target_modules is empty; name the layers to adapt (e.g. [q_proj, v_proj])"
            )
    if "task" in cfg and cfg.task.get("max_length") is not None:
        _check(problems, "task.max_length", cfg.task.get("max_length"), ">=1", kind=int)
    if "eval" in cfg:
        e = cfg.eval
        _check(problems, "eval.batch_size", e.get("batch_size"), ">=1", kind=int)
        _check(problems, "eval.latency_probe_n", e.get("latency_probe_n"), ">=0", kind=int)
    if "data" in cfg:
        d = cfg.data
        for split in ("train", "validation", "test"):
            for key in (f"max_{split}_examples", f"per_label_{split}"):
                value = d.get(key)
                if value is None:
                    continue
                # 0 validation rows is allowed (no validation); a run cannot train or test on nothing.
                _check(problems, f"data.{key}", value, ">=0" if split == "validation" else ">=1", kind=int)
            path = d.get(f"{split}_path")
            if path and not Path(str(path)).expanduser().exists():
                problems.append(f"data.{split}_path={path} does not exist")
        if d.get("validation_fraction") is not None:
            _check(problems, "data.validation_fraction", d.get("validation_fraction"), "[0,1)")
    if training and cfg.get("progress_bar", "auto") not in ("auto", True, False):  # training/progress.py
        problems.append(f"progress_bar={cfg.get('progress_bar')!r} is not one of auto, true, false")
    if "seed" in cfg:
        _number(problems, "seed", cfg.get("seed"), kind=int)
    if run_dir is not None:
        _writable(problems, "hydra.run.dir", run_dir)
    if problems:
        raise ConfigError(
            f"{len(problems)} problem(s) with the configuration, nothing was run: " + "; ".join(problems)
        )
