"""Building blocks shared by the entry points: config -> data, task, model, predictor.

Entry points (train/evaluate/compare) stay thin by calling these; nothing here reads global state.
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from slmforge.data.sources import DataError, DatasetSplits, DataSpec, load_splits
from slmforge.modeling.loading import LoadedModel, ModelLoadError, ModelSpec, load_model
from slmforge.prediction.base import Predictor
from slmforge.records import RecordError
from slmforge.tasks.base import Task, TaskError


class ConfigError(ValueError):
    """A configuration that cannot work; the message names the key and how to fix it."""


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    DataError,
    TaskError,
    ModelLoadError,
    ConfigError,
    CheckpointError,
    RecordError,
)


def user_errors_exit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn known user errors into one ``error: ...`` line on stderr and exit code 2 (no traceback).

    Files already written stay where they are; the message says what to fix.
    """

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            _finish_tracking()
            print(f"error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper


def _finish_tracking() -> None:
    from slmforge.tracking import finish

    finish()


def device_for(hardware: dict[str, Any]) -> str:
    """Where evaluation runs: the device the hardware group trains on."""
    return "cuda" if hardware["trainer"].get("accelerator") in ("gpu", "cuda") else "cpu"


def autocast_for(hardware: dict[str, Any]) -> Any:
    """Evaluation in the training precision (bf16 autocast when training uses bf16-mixed)."""
    import torch

    precision = str(hardware["trainer"].get("precision", "32-true"))
    return torch.autocast(device_for(hardware), dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def to_container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


def build_data(cfg: DictConfig) -> DatasetSplits:
    spec = to_container(cfg.data)
    known = set(DataSpec.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"data config has unknown key(s) {unknown}; known keys: {sorted(known)}")
    return load_splits(DataSpec(**spec))


def build_task(cfg: DictConfig, splits: DatasetSplits) -> Task:
    task: Task = hydra.utils.instantiate(cfg.task, _convert_="all")
    target = getattr(task, "target_key", "label")
    sample = splits.train[0]
    if target not in sample:
        raise ConfigError(
            f"task '{task.name}' needs a '{target}' field in every example but data '{cfg.data.name}' gives "
            f"{sorted(sample)}; pick the matching data config or set data.{target}_field"
        )
    task.setup(splits.train, {"validation": splits.validation, "test": splits.test})
    return task


def build_model(cfg: DictConfig) -> LoadedModel:
    spec = to_container(cfg.model)
    known = set(ModelSpec.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"model config has unknown key(s) {unknown}; known keys: {sorted(known)}")
    return load_model(ModelSpec(**spec))


# Above this many labels, ``label_decoding=auto`` searches the label trie (exact) instead of scoring every
# label: scoring appends all labels' tokens to each prompt (cost grows with the label count), the search
# runs only the branches that could win (a confident model: its answer's path). BENCHMARKS.md has the measurements behind it.
TRIE_ABOVE_LABELS = 16
LABEL_DECODINGS = ("auto", "scoring", "trie", "trie_greedy")


def build_predictor(
    lm: LoadedModel,
    task: Task,
    batch_size: int,
    shots: Any = (),
    constrained: bool = False,
    label_decoding: str = "auto",
) -> Predictor:
    """Classification: exact label scoring or label-trie decoding (``label_decoding``: auto | scoring |
    trie (best-first search: exactly scoring's argmax) | trie_greedy (greedy over the trie: can miss it);
    auto picks trie above ``TRIE_ABOVE_LABELS`` labels). Other tasks: batched
    (optionally schema-constrained) generation."""
    if task.decoding == "scoring":
        if label_decoding not in LABEL_DECODINGS:
            raise ConfigError(f"eval.label_decoding={label_decoding!r} is not one of {list(LABEL_DECODINGS)}")
        n_labels = len(getattr(task, "labels", []) or [])
        if label_decoding == "auto":
            label_decoding = "trie" if n_labels > TRIE_ABOVE_LABELS else "scoring"
        if label_decoding in ("trie", "trie_greedy"):
            from slmforge.prediction.label_trie import LabelTriePredictor

            return LabelTriePredictor(
                lm.model,
                lm.tokenizer,
                task,
                batch_size=batch_size,
                shots=shots,
                exact=label_decoding == "trie",
            )
        from slmforge.prediction.label_scoring import LabelScorer

        return LabelScorer(lm.model, lm.tokenizer, task, batch_size=batch_size, shots=shots)
    from slmforge.prediction.generation import GenerationPredictor

    return GenerationPredictor(
        lm.model, lm.tokenizer, task, batch_size=batch_size, shots=shots, constrained=constrained
    )


def select_shots(
    train: Sequence[dict[str, Any]], k: int, how: str, seed: int, target_key: str = "label"
) -> Any:
    """k in-context examples, always from the training split (so they can never leak test examples).

    random: a seeded sample; stratified: one example per label, cycling through labels in sorted order;
    similar: per input, the k most similar training examples (a callable, see ``prediction.shots``).
    """
    if k <= 0:
        return []
    if how == "similar":
        from slmforge.prediction.shots import SimilarShots

        return SimilarShots(train, k)
    rng = random.Random(seed)
    if how == "random" or target_key != "label":
        return rng.sample(list(train), min(k, len(train)))
    if how == "stratified":
        by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for ex in train:
            by_label[ex["label"]].append(ex)
        pools = {lab: rng.sample(rows, len(rows)) for lab, rows in sorted(by_label.items())}
        out: list[dict[str, Any]] = []
        while len(out) < k and any(pools.values()):
            for lab in sorted(pools):
                if pools[lab] and len(out) < k:
                    out.append(pools[lab].pop())
        return out
    raise ConfigError(f"shot_selection={how} is not one of ['random', 'stratified', 'similar']")


def data_info(cfg: DictConfig, splits: DatasetSplits) -> dict[str, Any]:
    return {
        "name": str(cfg.data.name),
        "fingerprint": splits.fingerprint,
        "origin": splits.origin,
        "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
    }


def model_info(lm: LoadedModel) -> dict[str, Any]:
    params = lm.spec.params_m if lm.spec.params_m is not None else round(lm.n_params / 1e6, 1)
    return {"model": lm.spec.name, "params_m": params, "source": lm.spec.source}


def resolve_ckpt(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``last`` / a run dir / a .ckpt path -> a checked checkpoint file path."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = run_dir / "checkpoints" / "last.ckpt"
    else:
        path = Path(ckpt_path).expanduser()
        if path.is_dir():
            path = path / "checkpoints" / "last.ckpt"
    if not path.exists():
        raise CheckpointError(
            f"ckpt_path={ckpt_path}: no checkpoint at {path}. To resume a run, re-run it in its own directory "
            f"(hydra.run.dir=<run dir> ckpt_path=last) or pass ckpt_path=<run dir or .ckpt file>"
        )
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a PyTorch checkpoint ({type(e).__name__}: {str(e)[:120]}); "
            f"delete it and resume from another checkpoint, or start fresh with ckpt_path=null"
        ) from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a Lightning checkpoint (no state_dict/global_step)")
    return str(path)
