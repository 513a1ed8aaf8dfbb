"""``slmforge-evaluate``: score the base model (zero-/k-shot) or a saved adapter on any split.

Uses the same setup, predictor and evaluation code as validation inside training, after the same data checks
(``validation.{json,md}``). Writes ``results.json`` and ``predictions.jsonl`` to its run directory (record
first; ``eval.validation_predictions=true`` then adds ``predictions_validation.jsonl`` for routing).

    slmforge-evaluate                                    # base model, zero-shot, test split
    slmforge-evaluate run_dir=outputs/train/runs/<run>   # that run's model/data/task + its adapter
    slmforge-evaluate run_dir=<run> data.test_path=new.jsonl   # the same model on other data
    slmforge-evaluate adapter_path=<dir> split=validation
    slmforge-evaluate k_shot=8 shot_selection=stratified
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from omegaconf import DictConfig, OmegaConf

from slmforge.cli.common import command, run_dir_of
from slmforge.config import config_dir
from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.records import ResultsRecord

log = logging.getLogger("slmforge")

# What ``run_dir=<run>`` takes from the run's saved config (the model, data and task it was trained on);
# overrides of these keys on this command line still win.
_FROM_RUN = ("model", "data", "task", "seed")


def merge_training_run(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """With ``run_dir=...``: take model, data, task and seed from that run's saved config, then re-apply this
    command's own overrides of those keys (e.g. a new ``data.test_path``)."""
    from slmforge.build import job_overrides
    from slmforge.records import ADAPTER_DIR, SAVED_CONFIG

    run_dir = Path(str(cfg.run_dir)).expanduser()
    saved = run_dir / SAVED_CONFIG
    if not saved.exists():
        raise ConfigError(
            f"run_dir={run_dir}: no saved config at {saved}; is it a slmforge-train run directory?"
        )
    old = OmegaConf.load(saved)
    merged = cfg.copy()
    OmegaConf.set_struct(merged, False)
    for key in _FROM_RUN:
        if key in old:
            merged[key] = old[key]
    # The run's data paths interpolate paths.shared_data: keep the folder the run was given on its command
    # line, unless this command sets one itself.
    old_shared = (
        OmegaConf.to_container(old.paths, resolve=False).get("shared_data") if "paths" in old else None
    )
    ours = OmegaConf.to_container(cfg.paths, resolve=False).get("shared_data")
    if old_shared is not None and str(ours).startswith("${oc.env:"):
        merged.paths.shared_data = old_shared
    # Key overrides (data.test_path=..., seed=3) are re-applied; group choices (model=tiny) are not: the run's
    # own model/data/task win, a group name is not a value.
    mine = []
    for o in overrides if overrides is not None else job_overrides():
        key = o.lstrip("+").split("=", 1)[0]
        if "=" in o and key.split(".")[0] in _FROM_RUN and ("." in key or key == "seed"):
            mine.append(o.lstrip("+"))
    if mine:
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(mine))
    if not cfg.get("adapter_path"):
        merged.adapter_path = str(run_dir / ADAPTER_DIR)
    return merged


def output_name(cfg: DictConfig, method: str, k: int) -> str:
    """What was evaluated, as a folder/record suffix: model, data (and test file), split, method."""
    parts = [str(cfg.model.name), str(cfg.data.name)]
    test_path = cfg.data.get("test_path") if str(cfg.split) == "test" else cfg.data.get(f"{cfg.split}_path")
    if test_path:
        parts.append(Path(str(test_path)).stem)
    parts += [str(cfg.split), method.replace("_", "-") + (f"{k}" if k else "")]
    return "-".join(parts)


def _rename_output(out_dir: Path, default: str, name: str) -> Path:
    """Hydra named the folder (``..._<default>``) before ``run_dir=`` was merged; rename it after what is
    evaluated (only that default name, never a folder the user chose)."""
    if not out_dir.name.endswith(default) or out_dir.name.endswith(name):
        return out_dir
    target = out_dir.with_name(out_dir.name[: -len(default)] + name)
    if target.exists():
        return out_dir
    out_dir.rename(target)  # open log files keep writing (same inode)
    return target


def evaluate(cfg: DictConfig) -> ResultsRecord:
    from slmforge.build import build_setup, check_data, evaluate_predictor, to_container
    from slmforge.checks import check_run_config
    from slmforge.data.validation import validation_config
    from slmforge.modeling.adapters import merged_adapter
    from slmforge.records import RESOLVED_CONFIG_FILE
    from slmforge.tracking import log_evaluation, make_loggers, predictions_to_log

    default_name, composed = str(cfg.run_name), cfg
    if cfg.get("run_dir"):
        cfg = merge_training_run(cfg)
    k = int(cfg.get("k_shot") or 0)
    method = "finetuned" if cfg.get("adapter_path") else "zero_shot"
    if k:
        method = "k_shot" if method == "zero_shot" else "finetuned_k_shot"
    out_dir = _rename_output(run_dir_of(cfg), default_name, output_name(cfg, method, k))
    check_run_config(cfg, out_dir, training=False)
    validation_config(cfg.get("validation"))  # a bad check name or severity, before anything runs
    from slmforge.training.run_folder import save_job_config

    save_job_config(composed, out_dir)  # re-runnable: slmforge-rerun <this folder>
    setup = build_setup(cfg, run_dir=out_dir)
    assert setup.lm is not None
    check_data(setup, out_dir)  # e.g. a new test file that overlaps the run's training data
    adapter = None
    if cfg.get("adapter_path"):
        from slmforge.modeling.adapter_files import load_adapter

        setup.lm.model, adapter = load_adapter(
            setup.lm.model, str(cfg.adapter_path), setup.model.get("weights_sha256")
        )
        setup.lm.model.to(setup.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESOLVED_CONFIG_FILE).write_text(OmegaConf.to_yaml(cfg, resolve=True))
    selection = str(cfg.shot_selection)
    shots = setup.shots(k, selection)
    name = cfg.get("name") or f"{setup.model['model']}-{method.replace('_', '-')}" + (f"-k{k}" if k else "")
    loggers = make_loggers(  # the W&B run is named after what was evaluated, as the output folder is
        to_container(cfg.get("logger")), out_dir, str(cfg.get("name") or output_name(cfg, method, k)),
        to_container(cfg), [setup.model["model"]], job_type="evaluate",
    )  # fmt: skip
    with merged_adapter(setup.lm.model, bool(cfg.eval.get("merge_adapter", True))):
        record, rows = evaluate_predictor(
            setup, setup.predictor(shots=shots), method=method, out_dir=out_dir, name=str(name),
            adapter=adapter, k=k, selection=selection, split=str(cfg.split),
        )  # fmt: skip
    log_evaluation(
        loggers, record, rows, f"{method}/{cfg.split}", max_rows=predictions_to_log(cfg.get("logger"))
    )
    from rich.console import Console

    from slmforge.cli.summary import comparison_table

    Console(width=110).print(comparison_table({method: record}, record.primary_metric, split=str(cfg.split)))
    print(f"outputs: {out_dir} (results.json, predictions.jsonl)")
    return record


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="evaluate")
@command
def main(cfg: DictConfig) -> float:
    record = evaluate(cfg)
    value = record.primary_value
    return float(value) if value is not None else 0.0


if __name__ == "__main__":
    main()
