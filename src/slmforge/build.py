"""The one setup path: config -> data -> task -> model -> length bound, device, autocast, provenance.

Every command (train, evaluate, compare, serve) and every benchmark script calls :func:`build_setup`, and
every evaluation that writes a record goes through :func:`evaluate_predictor`, which builds the record's
provenance (model id + weights hash, adapter spec, k and shot selection, seed, data fingerprint, sweep
overrides, versions) in one place. A test fails when a command stops sharing them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from slmforge.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from slmforge.data.sources import DatasetSplits
    from slmforge.data.validation import ValidationReport
    from slmforge.modeling.loading import LoadedModel
    from slmforge.prediction.base import Predictor
    from slmforge.records import PredictionRow, ResultsRecord
    from slmforge.tasks.base import Task


log = logging.getLogger("slmforge")


def to_container(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Log a stage's start and its duration (the run's log file shows where the time went)."""
    log.info("%s ...", name)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        log.info("%s done in %.1f s", name, time.perf_counter() - t0)


def compose_config(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """A command's config composed outside the command (benchmark scripts, notebooks, tests): the same
    defaults and overrides as ``slmforge-<config_name> <overrides>``."""
    from hydra import compose, initialize_config_dir

    from slmforge.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


# ---- the pieces ----------------------------------------------------------------------------------------


def _spec_from(cls: Any, section: Any, group: str) -> Any:
    """A config group as its dataclass; unknown keys are named (a typo must not be silently ignored)."""
    spec = to_container(section)
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f"{group} config has unknown key(s) {unknown}; known keys: {sorted(known)}")
    return cls(**spec)


def build_data(cfg: DictConfig) -> DatasetSplits:
    from slmforge.data.sources import DataSpec, load_splits

    return load_splits(_spec_from(DataSpec, cfg.data, "data"))


def _instantiate_task(cfg: DictConfig, splits: DatasetSplits) -> Task:
    """The task as configured, checked against the data's target field, not yet set up."""
    import hydra

    task: Task = hydra.utils.instantiate(cfg.task, _convert_="all")
    target = task.target_key
    sample = splits.train[0]
    if target not in sample:
        raise ConfigError(
            f"task '{task.name}' needs a '{target}' field in every example but data '{cfg.data.name}' gives "
            f"{sorted(sample)}; pick the matching data config or set data.{target}_field"
        )
    return task


def build_task(cfg: DictConfig, splits: DatasetSplits) -> Task:
    task = _instantiate_task(cfg, splits)
    task.setup(splits.train, {"validation": splits.validation, "test": splits.test})
    return task


def build_model(cfg: DictConfig) -> LoadedModel:
    from slmforge.modeling.loading import ModelSpec, load_model

    return load_model(_spec_from(ModelSpec, cfg.model, "model"))


def device_for(hardware: dict[str, Any]) -> str:
    """Where evaluation runs: the device the hardware group trains on."""
    return "cuda" if hardware["trainer"].get("accelerator") in ("gpu", "cuda") else "cpu"


def autocast_for(hardware: dict[str, Any]) -> Any:
    """Evaluation in the training precision (bf16 autocast when training uses bf16-mixed)."""
    import torch

    precision = str(hardware["trainer"].get("precision", "32-true"))
    return torch.autocast(device_for(hardware), dtype=torch.bfloat16, enabled=precision.startswith("bf16"))


def data_info(cfg: DictConfig, splits: DatasetSplits) -> dict[str, Any]:
    from slmforge.data.validation import split_fingerprints

    return {
        "name": str(cfg.data.name),
        "fingerprint": splits.fingerprint,
        "fingerprints": split_fingerprints(splits),  # per split: which one changed
        "origin": splits.origin,
        "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        **({"label_changes": splits.label_changes} if splits.label_changes else {}),
    }


def weights_sha256(model: Any) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, shapes, bytes): the identity of the
    weights that were evaluated, whatever file or cache folder they came from (~1 s for 135M in fp32)."""
    import torch

    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_info(lm: LoadedModel, weights_hash: str | None = None) -> dict[str, Any]:
    """The model part of a record: id, size, where it came from and the hash of its weights."""
    params = lm.spec.params_m if lm.spec.params_m is not None else round(lm.n_params / 1e6, 1)
    info: dict[str, Any] = {
        "model": lm.spec.name,
        "model_id": lm.spec.pretrained or lm.spec.gguf_file or lm.spec.name,
        "params_m": params,
        "source": lm.spec.source,
        "dtype": lm.spec.dtype,
    }
    if weights_hash:
        info["weights_sha256"] = weights_hash
    return info


def adapter_info(adapter_cfg: Any, path: str | Path | None = None) -> dict[str, Any] | None:
    """The adapter part of a record: kind, r, alpha, dropout, target modules (and where it was saved)."""
    if adapter_cfg is None:
        return {"kind": "lora", "path": str(path)} if path else None
    spec = to_container(adapter_cfg)
    out = {k: spec.get(k) for k in ("kind", "r", "alpha", "dropout", "target_modules", "use_rslora")}
    if path is not None:
        out["path"] = str(path)
    return out


def adapter_info_from_dir(path: str | Path) -> dict[str, Any]:
    """Adapter spec read back from a PEFT ``adapter_config.json`` (for adapters evaluated outside training)."""
    import json

    cfg_file = Path(path) / "adapter_config.json"
    try:
        c = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return {"path": str(path)}
    kind = "dora" if c.get("use_dora") else str(c.get("peft_type", "lora")).lower()
    targets = c.get("target_modules")
    return {
        "kind": kind,
        "r": c.get("r"),
        "alpha": c.get("lora_alpha"),
        "dropout": c.get("lora_dropout"),
        "target_modules": sorted(targets) if isinstance(targets, list) else targets,
        "use_rslora": c.get("use_rslora"),
        "path": str(path),
    }


# ---- provenance of a job -------------------------------------------------------------------------------

_LIBRARIES = ("torch", "transformers", "peft", "lightning", "hydra-core", "datasets", "wandb")


@functools.cache
def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("slmforge", *_LIBRARIES):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


@functools.cache
def package_git_sha() -> str | None:
    """The git commit of the slmforge source that runs (read where the package lives, not where the
    command was typed); None for an install outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{out}-dirty" if dirty else (out or None)


def job_overrides() -> list[str]:
    """The command-line overrides of this job (``hydra.*`` excluded): what tells sweep jobs apart."""
    try:
        from hydra.core.hydra_config import HydraConfig

        task = list(HydraConfig.get().overrides.task)
    except (ValueError, ImportError):  # outside @hydra.main (tests composing configs)
        return []
    return [o for o in task if not o.lstrip("+~").startswith("hydra.")]


def run_info(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    saved = (run_dir / ".hydra" / "config.yaml") if run_dir is not None else None
    return {
        "seed": int(cfg.seed) if cfg.get("seed") is not None else None,
        "overrides": job_overrides(),
        "config_path": str(saved) if saved is not None and saved.exists() else None,
    }


# ---- the setup -----------------------------------------------------------------------------------------


@dataclass
class Setup:
    """What every command needs, built once: data, task, model (on its device), hardware, provenance."""

    cfg: DictConfig
    splits: DatasetSplits
    task: Task
    lm: LoadedModel | None
    hardware: dict[str, Any]
    data: dict[str, Any]
    model: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return device_for(self.hardware)

    def autocast(self) -> Any:
        return autocast_for(self.hardware)

    @property
    def eval_cfg(self) -> Any:
        return self.cfg.eval

    def predictor(
        self, shots: Any = (), batch_size: int | None = None, scoring: str | None = None
    ) -> Predictor:
        """A predictor over the model as it is now, decoding as ``eval.*`` says.

        ``scoring``: raw | length_norm | calibrated label scoring for classification (None:
        ``eval.scoring``, raw when a saved config predates it); it lands in the record as
        ``predictor["scoring"]``."""
        from slmforge.prediction.factory import build_predictor

        if self.lm is None:
            raise ConfigError("this command was set up without a model; it cannot build a local predictor")
        if scoring is None:
            scoring = str(self.eval_cfg.get("scoring", "raw"))
        return build_predictor(
            self.lm, self.task, int(batch_size or self.eval_cfg.batch_size), shots=shots,
            constrained=bool(self.eval_cfg.constrained), label_decoding=str(self.eval_cfg.label_decoding),
            scoring=scoring, constraint_options=dict(to_container(self.eval_cfg.get("constraint")) or {}),
        )  # fmt: skip

    def shots(self, k: int, selection: str) -> Any:
        from slmforge.prediction.shots import select_shots

        return select_shots(self.splits.train, k, selection, int(self.cfg.seed), self.task.target_key)


def build_setup(cfg: DictConfig, *, with_model: bool = True, run_dir: Path | None = None) -> Setup:
    """data -> task -> model -> length bound -> device. Everything that can fail on bad input fails here,
    before any compute."""
    with stage("data"):
        splits = build_data(cfg)
        task = build_task(cfg, splits)
    hardware = to_container(cfg.hardware)
    lm, minfo = None, {}
    if with_model:
        with stage(f"model {cfg.model.name}"):
            lm = build_model(cfg)
            task.set_length_bound(lm.tokenizer, splits.train)
            minfo = model_info(lm, weights_sha256(lm.model))
            lm.model.to(device_for(hardware))
    return Setup(
        cfg=cfg, splits=splits, task=task, lm=lm, hardware=hardware,
        data=data_info(cfg, splits), model=minfo, run=run_info(cfg, run_dir),
    )  # fmt: skip


# ---- data validation -----------------------------------------------------------------------------------


def build_tokenizer(cfg: DictConfig) -> Any:
    """The model's tokenizer alone (no weights): what the truncation check needs."""
    from slmforge.modeling.loading import ModelSpec, load_tokenizer

    return load_tokenizer(_spec_from(ModelSpec, cfg.model, "model"))


def build_for_validation(cfg: DictConfig) -> tuple[DatasetSplits, Task, Any, str | None]:
    """What ``slmforge-validate`` checks: the data, the task and, when ``validation.truncation`` is on, the
    model's tokenizer (never its weights). A task that cannot be set up on this data (a test label train
    lacks, a gold record off the schema) comes back with the reason instead of raising, so the report still
    lists every finding; truncation is then not checked. Returns (splits, task, tokenizer, reason)."""
    from slmforge.data.validation import validation_config
    from slmforge.errors import TaskError, user_error_message

    config = validation_config(cfg.get("validation"))
    with stage("data"):
        splits = build_data(cfg)
        task = _instantiate_task(cfg, splits)
        try:
            task.setup(splits.train, {"validation": splits.validation, "test": splits.test})
        except TaskError as e:
            return splits, task, None, user_error_message(e)
    tokenizer = None
    if config.on("truncation"):
        with stage(f"tokenizer {cfg.model.name}"):
            tokenizer = build_tokenizer(cfg)
            task.set_length_bound(tokenizer, splits.train)
    return splits, task, tokenizer, None


def check_data(setup: Setup, folder: Path) -> ValidationReport | None:
    """The ``validation`` checks over a built setup (its data, set-up task and tokenizer): the report is
    written to ``folder``, each warning logged as one line, and an error finding raises ``DataError`` (the
    command's one ``error:`` line). None, and nothing written, when every check is off."""
    from slmforge.data.validation import enforce, validate_splits, validation_config

    config = validation_config(setup.cfg.get("validation"))
    if not any(config.on(check) for check in config.severity):
        return None
    tokenizer = setup.lm.tokenizer if setup.lm is not None and config.on("truncation") else None
    with stage("data validation"):
        report = validate_splits(
            setup.splits, setup.task.target_key, config, tokenizer=tokenizer, task=setup.task
        )
    enforce(report, folder)
    return report


def evaluate_predictor(
    setup: Setup,
    predictor: Predictor,
    *,
    method: str,
    out_dir: Path,
    name: str | None = None,
    kind: str = "local",
    adapter: dict[str, Any] | None = None,
    k: int = 0,
    selection: str | None = None,
    split: str = "test",
    examples: Sequence[dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    validation: bool | None = None,
) -> tuple[ResultsRecord, list[PredictionRow]]:
    """Evaluate ``predictor`` on ``split`` (or ``examples``) and write the record: the one place that says
    what a record's predictor, data and run provenance are."""
    from slmforge.evaluation.runner import evaluate_split

    ecfg = setup.eval_cfg
    if kind == "local":
        info: dict[str, Any] = {"kind": kind, "method": method, **setup.model, "adapter": adapter, "k": k}
        model_name = setup.model.get("model", "model")
    else:
        info = {"kind": kind, "method": method, "adapter": None, "k": k}
        model_name = getattr(predictor, "name", "api")
    if k:
        info["selection"] = selection
    info.update(extra or {})
    machine = setup.hardware.get("machine")
    if validation is None:
        validation = bool(ecfg.validation_predictions)
    # Abstention with a threshold chosen on validation (task.abstain.threshold=auto) needs validation
    # predictions whatever eval.validation_predictions says; the runner predicts them first.
    needs_val = setup.task.abstention_needs_validation and split != "validation"
    val_rows = setup.splits.validation if (validation and split == "test") or needs_val else None
    rows_in = examples if examples is not None else setup.splits.get(split)
    if kind == "local" and setup.lm is not None:
        from slmforge.prompting import count_truncated

        budget = setup.task.max_prompt_tokens  # the example's own prompt; shots come on top (prompting.py)
        shots = getattr(predictor, "shots", ())
        cut = count_truncated(setup.lm.tokenizer, setup.task, rows_in, shots)
        info["prompts"] = {"max_tokens": budget, "plus_shots": bool(shots), "truncated": cut}
        if cut:
            log.warning("%s: %d of %d %s prompts are longer than %d tokens (plus their shots) and were cut in "
                        "the middle (task.max_length=%d)", method, cut, len(rows_in), split, budget,
                        setup.task.max_length)  # fmt: skip
    ctx = setup.autocast() if kind == "local" else contextlib.nullcontext()
    with stage(f"evaluate {method} on {split} ({len(rows_in)} rows)"), ctx:
        return evaluate_split(
            predictor, setup.task, rows_in,
            name=name or f"{model_name}-{method.replace('_', '-')}" + (f"-k{k}" if k else ""),
            split=split, predictor_info=info, data_info=setup.data, out_dir=out_dir,
            latency_probe_n=int(ecfg.latency_probe_n) if kind == "local" else 0,
            validation_examples=val_rows, training=training,
            tags={"machine": machine} if machine and kind == "local" else None,
            run_info=setup.run,
        )  # fmt: skip


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
