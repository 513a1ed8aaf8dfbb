"""Saving and loading adapters with integrity checks: what is evaluated or served is what was trained.

On save: the weights must be finite; ``adapter_config.json`` records the base model portably (model id and
weights hash, never a cache folder) and the SHA-256 of the weights file. On load, each failure has its own
message: a missing folder or weights file, a truncated/corrupt file, a file without LoRA weights, non-finite
weights, a checksum that no longer matches, a base model other than the one trained on, shapes that do not
fit. peft alone reports most of these as a generic error or, worse, loads an adapter that changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from slmforge.errors import ConfigError, DivergenceError

WEIGHTS_FILE = "adapter_model.safetensors"
CONFIG_FILE = "adapter_config.json"
_SLMFORGE_KEY = "slmforge"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_adapter(model: Any, adapter_dir: Path, base_model: dict[str, Any]) -> str:
    """Save a peft model's adapter; returns the weights file's SHA-256. Raises :class:`DivergenceError`
    (nothing written) when a trainable weight is not finite."""
    bad = [n for n, p in model.named_parameters() if p.requires_grad and not bool(torch.isfinite(p).all())]
    if bad:
        raise DivergenceError(
            f"the trained adapter has non-finite weights ({len(bad)} tensors, e.g. {bad[0]}); it was not saved. "
            f"Retrain with a lower train.lr or with train.grad_clip on; results already written are kept"
        )
    model.save_pretrained(adapter_dir)  # PEFT format (safetensors), written by peft
    sha = file_sha256(adapter_dir / WEIGHTS_FILE)
    cfg_file = adapter_dir / CONFIG_FILE
    c = json.loads(cfg_file.read_text())
    c["base_model_name_or_path"] = base_model.get("model_id") or base_model.get("model")
    c[_SLMFORGE_KEY] = {
        "base_model": {k: base_model.get(k) for k in ("model", "model_id", "source", "weights_sha256")},
        "weights_sha256": sha,
    }
    tmp = cfg_file.with_name(cfg_file.name + ".tmp")
    tmp.write_text(json.dumps(c, indent=2, sort_keys=True))
    tmp.replace(cfg_file)
    return sha


def load_adapter(
    model: Any, path: str | Path, base_weights_sha256: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """``model`` wrapped with the adapter at ``path`` after every check; returns (peft model, adapter info
    for the record: kind, r, alpha, dropout, targets, path, sha256)."""
    from safetensors.torch import load_file

    from slmforge.build import adapter_info_from_dir

    where = Path(path).expanduser()
    key = f"adapter_path={path}"
    if not where.is_dir():
        raise ConfigError(f"{key}: no such folder; point it at a run's adapter/ folder")
    cfg_file = where / CONFIG_FILE
    if not cfg_file.exists():
        raise ConfigError(f"{key}: no {CONFIG_FILE} there; point it at a run's adapter/ folder")
    try:
        c = json.loads(cfg_file.read_text())
    except ValueError as e:
        raise ConfigError(
            f"{key}: {CONFIG_FILE} is not valid JSON ({e}); the folder is damaged: retrain or restore it"
        ) from e
    weights = where / WEIGHTS_FILE
    if not weights.exists():
        raise ConfigError(
            f"{key}: the weights file {WEIGHTS_FILE} is missing (only {CONFIG_FILE} is there); copy the whole adapter/ folder"
        )
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for truncated headers and data
        raise ConfigError(
            f"{key}: {WEIGHTS_FILE} is corrupt or truncated ({type(e).__name__}: {str(e)[:120]}); retrain or restore it"
        ) from e
    if not any("lora_" in k for k in state):
        raise ConfigError(
            f"{key}: {WEIGHTS_FILE} holds no LoRA weights (keys e.g. {sorted(state)[:3]}); it is not a LoRA adapter"
        )
    nonfinite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if nonfinite:
        raise DivergenceError(
            f"{key}: {len(nonfinite)} adapter tensors are not finite (e.g. {nonfinite[0]}); the training run diverged: retrain with a lower train.lr"
        )
    recorded = (c.get(_SLMFORGE_KEY) or {}).get("weights_sha256")
    sha = file_sha256(weights)
    if recorded and recorded != sha:
        raise ConfigError(
            f"{key}: {WEIGHTS_FILE} changed since it was saved (checksum {sha[:12]}, recorded {recorded[:12]}); restore the original or retrain"
        )
    trained_on = ((c.get(_SLMFORGE_KEY) or {}).get("base_model") or {}).get("weights_sha256")
    if trained_on and base_weights_sha256 and trained_on != base_weights_sha256:
        name = ((c.get(_SLMFORGE_KEY) or {}).get("base_model") or {}).get("model")
        raise ConfigError(
            f"{key}: trained on base model '{name}' (weights {trained_on[:12]}), but the model loaded has weights {base_weights_sha256[:12]}; evaluate it with the model it was trained on (run_dir=<its run> does this)"
        )
    from peft import PeftModel

    try:
        peft_model = PeftModel.from_pretrained(model, str(where))
    except Exception as e:
        raise ConfigError(
            f"{key}: the adapter does not fit this model ({type(e).__name__}: {str(e)[:200]}); evaluate it with the model it was trained on (run_dir=<its run> does this)"
        ) from e
    return peft_model, {**adapter_info_from_dir(where), "sha256": sha}
