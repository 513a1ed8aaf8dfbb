"""slmforge-evaluate run_dir=...: the run's data paths resolve against the shared-data folder the run
was given, unless the evaluate command names its own."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from slmforge.cli.evaluate import merge_training_run
from slmforge.config import config_dir


def _run_dir(tmp_path: Path, shared: str) -> Path:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    saved = {
        "seed": 0,
        "paths": {"shared_data": shared},
        "data": {"name": "b", "train_path": "${paths.shared_data}/b/train.jsonl"},
    }
    OmegaConf.save(OmegaConf.create(saved), run / ".hydra" / "config.yaml")
    return run


def _evaluate_cfg(overrides: list[str]):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


def test_run_dir_keeps_the_runs_shared_data_folder(tmp_path) -> None:
    run = _run_dir(tmp_path, "/data/benchmarks")
    merged = merge_training_run(_evaluate_cfg([f"run_dir={run}"]))
    assert merged.data.train_path == "/data/benchmarks/b/train.jsonl"
    assert merged.adapter_path == str(run / "adapter")


def test_an_explicit_shared_data_override_wins(tmp_path) -> None:
    run = _run_dir(tmp_path, "/data/benchmarks")
    merged = merge_training_run(_evaluate_cfg([f"run_dir={run}", "paths.shared_data=/elsewhere"]))
    assert merged.data.train_path == "/elsewhere/b/train.jsonl"


def test_group_choices_do_not_replace_the_runs_config_but_key_overrides_do(tmp_path) -> None:
    from omegaconf import OmegaConf

    from slmforge.cli.evaluate import merge_training_run

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        {"model": {"name": "tiny", "source": "tiny"}, "data": {"name": "jsonl", "test_path": "a.jsonl"},
         "task": {"_target_": "x"}, "seed": 1, "paths": {"shared_data": "/d"}},
        run / ".hydra/config.yaml",
    )  # fmt: skip
    cfg = OmegaConf.create(
        {"run_dir": str(run), "adapter_path": None, "model": {"name": "smollm2-135m"}, "data": {"name": "tickets"},
         "task": {}, "seed": 0, "paths": {"shared_data": "${oc.env:X,/y}"}}
    )  # fmt: skip
    merged = merge_training_run(cfg, ["model=tiny", "data.test_path=b.jsonl", "seed=5"])
    assert merged.model.name == "tiny" and merged.model.source == "tiny"  # still a mapping, the run's
    assert merged.data.test_path == "b.jsonl" and merged.data.name == "jsonl" and merged.seed == 5
    assert merged.adapter_path == str(run / "adapter")
