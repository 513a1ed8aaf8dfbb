"""Where the Hydra config root lives, and small helpers shared by the entry points."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def config_dir() -> str:
    """The `conf/` root: inside the package for a wheel install, at the repo root for an editable one."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "train.yaml").exists():
            return str(candidate)
    raise FileNotFoundError(
        f"slmforge's conf/ directory was not found next to {_PACKAGE_DIR}; reinstall with `pip install -e .`"
    )
