"""A tiny training run shared by the CLI test modules that only read its outputs (one run, not one each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clihelp import FAST, run_cli


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``slmforge-train model=tiny debug=fast adapter.r=4 seed=3 logger=csv``: read it, never write into it."""
    root = tmp_path_factory.mktemp("shared_run")
    run_dir = root / "run"
    proc = run_cli(
        "slmforge-train", *FAST, "adapter.r=4", "seed=3", "logger=csv", f"hydra.run.dir={run_dir}", cwd=root
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir
