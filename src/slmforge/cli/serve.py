"""``slmforge-serve``: a local model (plus an optional fine-tuned adapter) behind an OpenAI-compatible API.

    slmforge-serve                                      # SmolLM2-135M at http://127.0.0.1:8000/v1
    slmforge-serve adapter_path=outputs/train/runs/<run>/adapter port=8001
    slmforge-serve model=tiny port=0 faults.fail_first_n=3   # a deliberately flaky server for client tests

Any OpenAI client then talks to it, including ``baseline=api baseline.base_url=<printed url>
baseline.model=<served name>``. See :mod:`slmforge.testing.openai_double` for the API and the faults.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from slmforge.cli.common import command
from slmforge.config import config_dir
from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.modeling.loading import LoadedModel
    from slmforge.serving import ServerHandle

log = logging.getLogger(__name__)


def load_for_serving(model_cfg: Any, adapter_path: str | None = None, device: str = "auto") -> LoadedModel:
    """Load the base model, merge the adapter into it (one matmul per layer instead of three), move it."""
    import torch

    from slmforge.modeling.loading import ModelSpec, load_model

    spec = model_cfg if isinstance(model_cfg, ModelSpec) else ModelSpec(**_container(model_cfg))
    loaded = load_model(spec)
    if adapter_path:
        from slmforge.build import weights_sha256
        from slmforge.modeling.adapter_files import load_adapter

        peft_model, _ = load_adapter(loaded.model, str(adapter_path), weights_sha256(loaded.model))
        loaded.model = peft_model.merge_and_unload()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded.model.to(device)
    return loaded


def build_server(cfg: DictConfig, background: bool = True) -> ServerHandle:
    """Everything the CLI does except blocking: load, merge, start. Callable from code and tests."""
    from slmforge.serving import start_server

    loaded = load_for_serving(cfg.model, cfg.get("adapter_path"), str(cfg.get("device") or "auto"))
    faults = _container(cfg.get("faults") or {})
    return start_server(
        loaded.model,
        loaded.tokenizer,
        host=str(cfg.host),
        port=int(cfg.port),
        model_name=str(cfg.get("served_name") or loaded.spec.name),
        api_key=cfg.get("api_key"),
        background=background,
        **faults,
    )


def _container(cfg: Any) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)  # type: ignore[return-value]


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="serve")
@command
def main(cfg: DictConfig) -> None:
    """Console entry point: print the base URL, serve until Ctrl-C."""
    try:
        handle = build_server(cfg, background=False)
    except OSError as e:  # typically the port is taken
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port} ({e}); pick another port=...") from e
    adapter = f" + adapter {cfg.adapter_path}" if cfg.get("adapter_path") else ""
    print(f"serving '{cfg.get('served_name') or cfg.model.name}'{adapter} at {handle.url}", flush=True)
    handle.serve_forever()


if __name__ == "__main__":
    main()
