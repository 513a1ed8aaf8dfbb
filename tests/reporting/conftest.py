"""Fixtures for the reporting tests: a hand-built multirun directory (see fixture_runs.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def load_fixture_runs() -> ModuleType:
    """Import fixture_runs.py by path, so it works whatever pytest's import mode and rootdir."""
    path = Path(__file__).with_name("fixture_runs.py")
    spec = importlib.util.spec_from_file_location("slmforge_test_fixture_runs", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fixture_runs() -> ModuleType:
    return load_fixture_runs()


@pytest.fixture
def multirun_dir(tmp_path: Path, fixture_runs: ModuleType) -> Path:
    return fixture_runs.write_multirun(tmp_path / "multirun")
