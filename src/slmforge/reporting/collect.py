"""Find and load results records from run directories, sweep (multirun) directories or single files.

A run directory holds ``results.json`` and possibly more records named ``results*.json`` (for example
``results_zero_shot.json`` and ``results_finetuned.json`` when one run evaluated the base model before and
after fine-tuning); a Hydra multirun directory holds many run directories, at any depth.

Sweep jobs usually share predictor names (every LoRA job writes ``tiny-lora``); the command-line overrides
each record keeps (:attr:`~slmforge.records.ResultsRecord.swept`) tell them apart, both in the names
(``tiny-lora [adapter.r=4]``) and as leaderboard columns (:func:`swept_keys`).

Seeds are not a sweep dimension but repetitions: records of one predictor that differ only in their seed
(``slmforge-compare seeds=[0,1,2]``, or ``-m seed=0,1,2``) keep one shared name, and the leaderboard
aggregates them into one row (:func:`seed_groups`). A predictor's identity (:func:`predictor_identity`) is
what it is without the seed: task, split, kind, method, model, k and shot selection, scoring, the adapter
settings (not its per-seed path) and the swept overrides other than ``seed``/``seeds``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

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
    appended (else the run id), so every leaderboard row and plot label stays distinguishable; records of
    one predictor that differ only by seed keep their shared name (one leaderboard row).
    """
    return [r for r, _ in collect_record_files(paths)]


def collect_record_files(paths: str | Path | Iterable[str | Path]) -> list[tuple[ResultsRecord, Path]]:
    """:func:`collect_records` with each record's file (its ``predictions.jsonl`` and
    ``confusion_matrix.json`` lie beside it)."""
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
    return list(zip(records, files, strict=True))


def swept_keys(records: Sequence[ResultsRecord]) -> list[str]:
    """Override keys that two records set to different values: the dimensions of a sweep (sorted).

    A key only some records set, all to one value (``run_dir`` of a baseline added later), is not one.
    """
    values: defaultdict[str, set[str]] = defaultdict(set)
    for r in records:
        for key, value in r.swept.items():
            values[key].add(value)
    return sorted(key for key, vs in values.items() if len(vs) > 1)


SEED_KEYS = frozenset({"seed", "seeds"})
"""Override keys that repeat a predictor rather than change it."""
_PER_SEED_ADAPTER_KEYS = frozenset({"path", "sha256"})


def predictor_identity(record: ResultsRecord, swept: Sequence[str] = ()) -> tuple[Any, ...]:
    """What a predictor is, without its seed (see the module docstring); ``swept``: the sweep's keys."""
    p = record.predictor
    adapter = p.get("adapter") or {}
    if isinstance(adapter, dict):  # its per-seed file (path, hash) is not part of what the predictor is
        adapter_id: Any = tuple(
            sorted((str(k), repr(v)) for k, v in adapter.items() if k not in _PER_SEED_ADAPTER_KEYS)
        )
    else:
        adapter_id = repr(adapter)
    overrides = tuple((k, record.swept.get(k)) for k in swept if k not in SEED_KEYS)
    return (
        record.task, record.split, p.get("kind"), p.get("method"), p.get("model"), p.get("k"),
        p.get("selection"), p.get("scoring") or "raw", adapter_id, overrides,
    )  # fmt: skip


def one_predictor_over_seeds(records: Sequence[ResultsRecord], swept: Sequence[str] = ()) -> bool:
    """True when ``records`` are one predictor evaluated with distinct, known seeds."""
    seeds = [r.seed for r in records]
    return (
        len(records) > 1
        and None not in seeds
        and len(set(seeds)) == len(seeds)
        and len({predictor_identity(r, swept) for r in records}) == 1
    )


def seed_groups(records: Sequence[ResultsRecord]) -> list[list[int]]:
    """Indices of ``records`` grouped into leaderboard rows: one predictor's records over distinct seeds
    form one group (same name and identity); anything else (a record evaluated twice with one seed, or
    without a seed) stays a row of its own. Groups keep the order of their first record."""
    swept = swept_keys(records)
    by_key: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(records):
        by_key.setdefault((r.name, predictor_identity(r, swept)), []).append(i)
    groups: list[list[int]] = []
    for members in by_key.values():
        if one_predictor_over_seeds([records[i] for i in members], swept):
            groups.append(members)
        else:
            groups.extend([i] for i in members)
    return sorted(groups, key=lambda g: g[0])


def _disambiguate_names(records: list[ResultsRecord]) -> None:
    seed_merged: set[str] = set()  # names shared on purpose: one predictor over several seeds
    groups: defaultdict[str, list[ResultsRecord]] = defaultdict(list)
    for r in records:
        groups[r.name].append(r)
    for name, group in groups.items():
        if len(group) < 2:
            continue
        keys = [k for k in swept_keys(group) if k not in SEED_KEYS]
        labels = [", ".join(f"{k}={r.swept[k]}" for k in keys if k in r.swept) for r in group]
        by_label: defaultdict[str, list[ResultsRecord]] = defaultdict(list)
        for r, label in zip(group, labels, strict=True):
            by_label[label].append(r)
        # Records that differ only by seed are one predictor: they share one label (one leaderboard row).
        merged = {label: one_predictor_over_seeds(rs, keys) for label, rs in by_label.items()}
        if len(by_label) == 1 and all(merged.values()):
            seed_merged.add(name)
            continue
        shared = Counter(labels)
        for i, (r, label) in enumerate(zip(group, labels, strict=True), 1):
            # Override values when they tell this record (or this predictor's seeds) apart, else the run id.
            unique = label and (shared[label] == 1 or merged[label])
            suffix = label if unique else (r.run_id or str(i))
            r.name = f"{name} [{suffix}]"
            if unique and merged[label] and shared[label] > 1:
                seed_merged.add(r.name)
    # Two records with the same name *and* run id (re-evaluations of one run) still need telling apart.
    counts = Counter(r.name for r in records)
    seen: Counter[str] = Counter()
    for r in records:
        if counts[r.name] > 1 and r.name not in seed_merged:
            seen[r.name] += 1
            r.name = f"{r.name} #{seen[r.name]}"
