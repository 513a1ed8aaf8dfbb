"""``slmforge-rerun RUN_DIR [override ...]``: run a finished run again from its saved config.

Equivalent to ``slmforge-train --config-path RUN_DIR/.hydra --config-name config`` (or evaluate, whichever
produced the run) in a run folder of its own (``<outputs>/rerun/runs/<time>_<original folder>``, never inside
the original, so reports over the original never count the rerun twice), then prints each test metric beside
the original. With the same seed on CPU the numbers match.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

_ENTRY = {
    "train": "slmforge.cli.train",
    "evaluate": "slmforge.cli.evaluate",
    "compare": "slmforge.cli.compare",
}


def _metrics(run_dir: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    from slmforge.records import RESULTS_FILE

    for res in sorted(run_dir.rglob(RESULTS_FILE)):
        rec = json.loads(res.read_text())
        rel = res.parent.relative_to(run_dir).as_posix() or "."
        out.update({f"{rel}:{k}": v for k, v in rec["metrics"].items() if isinstance(v, int | float)})
    return out


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    run_dir = Path(args[0]).expanduser().resolve()
    saved = run_dir / ".hydra" / "config.yaml"
    if not saved.exists():
        print(
            f"error: {saved} not found; pass a run directory written by slmforge-train/evaluate",
            file=sys.stderr,
        )
        return 2
    hydra_cfg = run_dir / ".hydra" / "hydra.yaml"
    job = OmegaConf.load(hydra_cfg).hydra.job.name if hydra_cfg.exists() else "train"
    module = _ENTRY.get(str(job), "slmforge.cli.train")
    stamp = dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    new_dir = (
        Path(os.environ.get("SLMFORGE_OUTPUTS", "outputs")) / "rerun" / "runs" / f"{stamp}_{run_dir.name}"
    )
    cmd = [
        sys.executable, "-m", module,
        "--config-path", str(saved.parent), "--config-name", "config",
        f"hydra.run.dir={new_dir}", "ckpt_path=null", *args[1:],
    ]  # fmt: skip
    print("rerun:", " ".join(cmd[2:]), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        return rc
    before, after = _metrics(run_dir), _metrics(new_dir)
    print(f"{'metric':50s} {'original':>10s} {'rerun':>10s}")
    for key in sorted(set(before) & set(after)):
        print(f"{key:50s} {before[key]:10.4f} {after[key]:10.4f}")
    print(f"outputs: {new_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
