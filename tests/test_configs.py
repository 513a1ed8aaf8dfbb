"""Every config file composes, and every experiment/group option resolves without missing keys."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from slmforge.config import config_dir

CONF = Path(config_dir())
GROUPS = [
    "model",
    "adapter",
    "data",
    "task",
    "hardware",
    "logger",
    "experiment",
    "debug",
    "hparams_search",
    "validation",
]
# Options that need a value the user supplies (a file path, a hub id) are composed with one.
NEEDS = {
    ("data", "jsonl"): ["data.train_path=a.jsonl", "data.test_path=b.jsonl"],
    ("data", "hub"): ["data.hub_path=some/dataset"],
}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(name: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides, return_hydra_config=True)


def test_every_group_has_options():
    for group in ["model", "adapter", "data", "task", "hardware", "logger"]:
        assert _options(group), group


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)], ids=lambda x: str(x))
def test_option_composes_and_resolves(group, option):
    overrides = [f"{group}={option}", *NEEDS.get((group, option), [])]
    cfg = _compose("train", overrides)
    # Resolve everything but Hydra's runtime-only values.
    cfg.hydra.runtime.output_dir = "/tmp/x"
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    job_cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    container = OmegaConf.to_container(job_cfg, resolve=True, throw_on_missing=True)
    assert container["model"]["name"]
    assert container["task"]["_target_"].startswith("slmforge.tasks.")


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_primary_configs_compose(name):
    needs = {"report": ["runs=[x]"], "route": ["cheap=a", "expensive=b"]}
    cfg = _compose(name, needs.get(name, []))
    assert cfg is not None


def test_every_config_file_opens_with_a_comment():
    for path in CONF.rglob("*.yaml"):
        first = path.read_text().lstrip().splitlines()[0]
        assert first.startswith("#"), f"{path} should open with a comment saying what it is for"


@pytest.mark.parametrize(
    ("experiment", "fields"),
    [("sroie", ["company", "date", "address", "total"]),
     ("invoices", ["vendor", "date", "invoice_number", "currency", "total", "line_items"])],
)  # fmt: skip
def test_experiment_schema_is_exactly_its_own(experiment, fields):
    # Hydra merges dicts: an experiment that overrode task.schema used to keep the invoice fields too.
    import hydra

    cfg = _compose("train", [f"experiment={experiment}"])
    task = hydra.utils.instantiate(cfg.task, _convert_="all")
    assert [f.name for f in task.schema.fields] == fields
