"""Where the Hydra config root and the outputs folder live, and small helpers shared by the entry points."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
# Every command writes its run folders under this variable's folder (else ./outputs): conf/paths/default.yaml
# (paths.output_root), the report/route/serve configs and slmforge-rerun read it.
OUTPUTS_ENV = "SLMFORGE_OUTPUTS"


def config_dir() -> str:
    """The `conf/` root: inside the package for a wheel install, at the repo root for an editable one."""
    for candidate in (_PACKAGE_DIR / "conf", _PACKAGE_DIR.parents[1] / "conf"):
        if (candidate / "train.yaml").exists():
            return str(candidate)
    raise FileNotFoundError(
        f"slmforge's conf/ directory was not found next to {_PACKAGE_DIR}; reinstall with `pip install -e .`"
    )


def find_outputs_dir(start: str | Path = ".") -> Path:
    """The outputs folder a reader of finished runs means: ``$SLMFORGE_OUTPUTS`` when set, else the nearest
    ``outputs/`` in ``start`` or a folder above it (commands run from the repo root write ``./outputs``; a
    notebook runs from ``notebooks/``). Falls back to ``start/outputs``, which names the missing folder."""
    if OUTPUTS_ENV in os.environ:
        return Path(os.environ[OUTPUTS_ENV]).expanduser()
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / "outputs").is_dir():
            return folder / "outputs"
    return here / "outputs"
