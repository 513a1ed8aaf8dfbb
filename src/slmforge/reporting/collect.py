"""Find and load results records from run directories, sweep (multirun) directories or single files.

A run directory holds ``results.json`` and possibly more records named ``results*.json`` (for example
``results_zero_shot.json`` and ``results_finetuned.json`` when one run evaluated the base model before and
after fine-tuning); a Hydra multirun directory holds many run directories, at any depth.

Sweep jobs usually share predictor names (every LoRA job writes ``tiny-lora``); the command-line overrides
each record keeps (:attr:`~slmforge.records.ResultsRecord.swept`) tell them apart, both in the names
(``tiny-lora [adapter.r=4]``) and as leaderboard columns (:func:`swept_keys`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
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
    ``results*.json``. Records whose ``name`` collides get the override values that differ between them
    appended (else the run id), so every leaderboard row and plot label stays distinguishable.
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


def swept_keys(records: Sequence[ResultsRecord]) -> list[str]:
    """Override keys that two records set to different values: the dimensions of a sweep (sorted).

    A key only some records set, all to one value (``run_dir`` of a baseline added later), is not one.
    """
    values: defaultdict[str, set[str]] = defaultdict(set)
    for r in records:
        for key, value in r.swept.items():
            values[key].add(value)
    return sorted(key for key, vs in values.items() if len(vs) > 1)


def _disambiguate_names(records: list[ResultsRecord]) -> None:
    groups: defaultdict[str, list[ResultsRecord]] = defaultdict(list)
    for r in records:
        groups[r.name].append(r)
    for name, group in groups.items():
        if len(group) < 2:
            continue
        keys = swept_keys(group)
        labels = [", ".join(f"{k}={r.swept[k]}" for k in keys if k in r.swept) for r in group]
        shared = Counter(labels)
        for i, (r, label) in enumerate(zip(group, labels, strict=True), 1):
            # Override values when they tell this record apart, else the run id.
            suffix = label if label and shared[label] == 1 else (r.run_id or str(i))
            r.name = f"{name} [{suffix}]"
    # Two records with the same name *and* run id (re-evaluations of one run) still need telling apart.
    counts = Counter(r.name for r in records)
    seen: Counter[str] = Counter()
    for r in records:
        if counts[r.name] > 1:
            seen[r.name] += 1
            r.name = f"{r.name} #{seen[r.name]}"
