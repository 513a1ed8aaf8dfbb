"""Run slmforge's console scripts as a user would (a subprocess), offline, on tiny models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
FAST = ["model=tiny", "debug=fast"]


def run_cli(
    script: str, *args: str, cwd: Path, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    exe = BIN / script
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-m", f"slmforge.cli.{script.removeprefix('slmforge-')}"]
    )
    full_env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    return subprocess.run(
        [*cmd, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
