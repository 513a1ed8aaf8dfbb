"""Find and load results records from run directories, sweep (multirun) directories or single files.

A run directory holds ``results.json`` and possibly more records named ``results*.json`` (for example
``results_zero_shot.json`` and ``results_finetuned.json`` when one run evaluated the base model before and
after fine-tuning); a Hydra multirun directory holds many run directories, at any depth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from slmforge.records import RecordError, ResultsRecord, read_results

RESULTS_GLOB = "results*.json"
# Folders that never hold records but can be large (W&B run files, checkpoints): skipping them keeps a
# recursive search of a big sweep fast.
_SKIP_DIRS = {"wandb", ".hydra", "checkpoints", "__pycache__", ".git"}


def find_results_files(path: str | Path) -> list[Path]:
    """All ``results*.json`` files at ``path`` (a file, a run dir, or a sweep dir searched recursively)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RecordError(f"{p}: no such file or directory; pass runs=[path/to/run_or_multirun_dir]")
    if p.is_file():
        return [p]
    found = [
        f
        for f in p.rglob(RESULTS_GLOB)
        if f.is_file() and not _SKIP_DIRS.intersection(part for part in f.relative_to(p).parts[:-1])
    ]
    return sorted(found)


def collect_records(paths: str | Path | Iterable[str | Path]) -> list[ResultsRecord]:
    """Load every results record under ``paths``, in a stable (path-sorted) order.

    Raises :class:`~slmforge.records.RecordError` naming the path when a path does not exist or holds no
    ``results*.json``. Records whose ``name`` collides get the run id appended, so every leaderboard row
    and plot label stays distinguishable.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise RecordError("no run paths given; pass runs=[path/to/run_or_multirun_dir]")
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = find_results_files(path)
        if not found:
            raise RecordError(
                f"{path}: no {RESULTS_GLOB} found here or below; evaluate the runs first "
                "(slmforge-evaluate / slmforge-train) or point runs= at the multirun directory"
            )
        for f in found:
            key = f.resolve()
            if key not in seen:  # a run dir passed alongside its parent sweep is read once
                seen.add(key)
                files.append(f)
    records = [read_results(f) for f in files]
    _disambiguate_names(records)
    return records


def _disambiguate_names(records: list[ResultsRecord]) -> None:
    counts = Counter(r.name for r in records)
    seen: Counter[str] = Counter()
    for r in records:
        if counts[r.name] > 1:
            seen[r.name] += 1
            suffix = r.run_id or str(seen[r.name])
            r.name = f"{r.name} [{suffix}]"
    # Two records with the same name *and* run id (re-evaluations of one run) still need telling apart.
    counts = Counter(r.name for r in records)
    seen.clear()
    for r in records:
        if counts[r.name] > 1:
            seen[r.name] += 1
            r.name = f"{r.name} #{seen[r.name]}"
