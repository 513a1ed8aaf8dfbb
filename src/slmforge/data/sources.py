"""Data sources -> canonical examples, split into train / validation / test.

A canonical example is a dict with ``id``, ``text`` and the task's target: ``label`` (classification),
``fields`` (extraction) or ``output`` (generation); extra keys ride along. Sources:
- ``generator``: a built-in seeded generator (``tickets``, ``invoices``, ``product_descriptions``);
- ``files``: local JSONL / CSV / Parquet files, one per split (validation optional);
- ``hub``: a Hugging Face dataset by name.
All of them go through ``datasets`` and then the same field mapping and validation, so a bad file or a
renamed field fails the same way whatever the source: with the file, the field and the fix.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmforge.errors import DataError

SPLITS = ("train", "validation", "test")
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class DataSpec:
    """Where examples come from and which fields hold what. Built by Hydra from ``conf/data/*.yaml``."""

    name: str
    source: str = "files"  # generator | files | hub
    generator: str | None = None
    sizes: dict[str, int] = field(default_factory=lambda: {"train": 800, "validation": 100, "test": 200})
    train_path: str | None = None
    validation_path: str | None = None
    test_path: str | None = None
    hub_path: str | None = None
    hub_name: str | None = None
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "test": "test"})
    text_field: str = "text"
    label_field: str | None = "label"
    fields_field: str | None = None
    output_field: str | None = None
    validation_fraction: float = 0.1
    max_train_examples: int | None = None
    max_validation_examples: int | None = None
    max_test_examples: int | None = None
    per_label_train: int | None = None  # at most this many rows per label (classification), seeded
    per_label_validation: int | None = None
    per_label_test: int | None = None
    # Simulated out-of-scope traffic: these labels (a count, chosen seeded, or a list) leave train and
    # validation, and their test rows are relabelled ``out_of_scope_label``.
    holdout_labels: int | list[str] | None = None
    out_of_scope_label: str = "out_of_scope"
    # Simulated minority classes: the train rows of these labels (a count or a list) are cut to this share.
    minority_labels: int | list[str] | None = None
    minority_fraction: float = 0.05
    label_choice_seed: int = (
        0  # picks counted holdout/minority labels; fixed so every seed sees the same ones
    )
    seed: int = 0


@dataclass
class DatasetSplits:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    test: list[dict[str, Any]]
    fingerprint: str
    origin: dict[str, str]
    # What load_splits changed in the labels (held-out / minority labels), for the results record.
    label_changes: dict[str, Any] = field(default_factory=dict)

    def get(self, split: str) -> list[dict[str, Any]]:
        if split not in SPLITS:
            raise DataError(f"split={split} is not one of {list(SPLITS)}")
        return getattr(self, split)


def _target_key(spec: DataSpec) -> tuple[str, str]:
    """(canonical key, source field) of the task target."""
    if spec.fields_field:
        return "fields", spec.fields_field
    if spec.output_field:
        return "output", spec.output_field
    if spec.label_field:
        return "label", spec.label_field
    raise DataError(
        f"data '{spec.name}': set one of data.label_field, data.fields_field or data.output_field"
    )


def _load_file(path_str: str, spec: DataSpec, split: str) -> list[dict[str, Any]]:
    import datasets

    path = Path(path_str).expanduser()
    if not path.exists():
        raise DataError(
            f"data '{spec.name}': {split} file {path} does not exist; fix data.{split}_path "
            f"(e.g. data.{split}_path=/path/to/{split}.jsonl)"
        )
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"data '{spec.name}': {path} has an unknown extension; use one of {sorted(_FORMATS)}")
    if path.stat().st_size == 0:
        raise DataError(
            f"data '{spec.name}': {split} file {path} is empty (0 bytes); point data.{split}_path at the file "
            f"with your examples"
        )
    if path.suffix.lower() == ".jsonl":
        return _read_jsonl(path, spec, split)
    try:
        ds = datasets.load_dataset(fmt, data_files=str(path), split="train")
    except Exception as e:  # datasets wraps parse errors in several exception types
        cause = e.__cause__ or e.__context__ or e
        raise DataError(f"data '{spec.name}': could not read {path} as {fmt}: {cause}") from e
    return [dict(r) for r in ds]


def _read_jsonl(path: Path, spec: DataSpec, split: str) -> list[dict[str, Any]]:
    """One JSON object per line, read here rather than by ``datasets`` so that a bad line is reported by
    its 1-based line number and JSON error (``datasets`` reports a 0-based row and drops the cause)."""
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"data '{spec.name}': {path} line {lineno} is not valid JSON ({e.msg} at column {e.colno}); "
                    f"fix or remove that line"
                ) from e
            if not isinstance(row, dict):
                raise DataError(
                    f"data '{spec.name}': {path} line {lineno} is a JSON {type(row).__name__}, not an object "
                    f'with fields (e.g. {{"text": ..., "label": ...}})'
                )
            rows.append(row)
    if not rows:
        raise DataError(f"data '{spec.name}': {split} file {path} has no rows (only blank lines)")
    return rows


def _load_hub(spec: DataSpec) -> dict[str, list[dict[str, Any]]]:
    import datasets

    out = {}
    for split, hub_split in spec.hub_splits.items():
        try:
            ds = datasets.load_dataset(spec.hub_path, spec.hub_name, split=hub_split)
        except Exception as e:
            raise DataError(
                f"data '{spec.name}': hub dataset {spec.hub_path} split {hub_split} could not be loaded "
                f"({type(e).__name__}: {str(e)[:200]}). Offline? Save it as JSONL and use data=jsonl "
                f"data.train_path=... data.test_path=..."
            ) from e
        out[split] = [dict(r) for r in ds]
    return out


def _canonicalise(rows: list[dict[str, Any]], spec: DataSpec, split: str, where: str) -> list[dict[str, Any]]:
    key, src = _target_key(spec)
    out = []
    for i, row in enumerate(rows):
        for needed, override in ((spec.text_field, "text_field"), (src, f"{key}_field")):
            if needed not in row:
                raise DataError(
                    f"data '{spec.name}': {where} row {i + 1} has no field '{needed}' (fields: {sorted(row)}); "
                    f"set data.{override}=<name> to the field that holds it"
                )
        text = row[spec.text_field]
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"data '{spec.name}': {where} row {i + 1} has an empty '{spec.text_field}'; "
                f"remove the row or fill it in"
            )
        target = row[src]
        if key == "label":
            if target is None or str(target).strip() == "":
                raise DataError(f"data '{spec.name}': {where} row {i + 1} has an empty label '{src}'")
            target = str(target)
        if key == "fields" and isinstance(target, str):
            try:
                target = json.loads(target)
            except json.JSONDecodeError as e:
                raise DataError(f"data '{spec.name}': {where} row {i + 1}: '{src}' is not JSON ({e})") from e
        ex = {k: v for k, v in row.items() if k not in (spec.text_field, src)}
        ex.update({"id": str(row.get("id", f"{split}-{i}")), "text": text, key: target})
        out.append(ex)
    return out


def _subsample(rows: list[dict[str, Any]], n: int | None, seed: int) -> list[dict[str, Any]]:
    if n is None or n >= len(rows):
        return rows
    idx = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in idx]


def _per_label(rows: list[dict[str, Any]], k: int, seed: int) -> list[dict[str, Any]]:
    """At most ``k`` rows of each label, drawn with ``seed`` (labels in sorted order), then shuffled."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    rng = random.Random(seed)
    keep = []
    for label in sorted(by_label):
        group = by_label[label]
        keep.extend(rng.sample(group, min(k, len(group))))
    rng.shuffle(keep)
    return keep


def _row_bytes(ex: dict[str, Any]) -> bytes:
    """The one encoding every data fingerprint hashes a canonical row with."""
    return json.dumps(ex, sort_keys=True, default=str).encode()


def rows_fingerprint(rows: list[dict[str, Any]]) -> str:
    """sha256 of one split's canonical rows (16 hex characters): which split changed between two runs."""
    h = hashlib.sha256()
    for ex in rows:
        h.update(_row_bytes(ex))
    return h.hexdigest()[:16]


def _fingerprint(splits: dict[str, list[dict[str, Any]]]) -> str:
    h = hashlib.sha256()
    for split in SPLITS:
        for ex in splits[split]:
            h.update(_row_bytes(ex))
        h.update(b"|")
    return h.hexdigest()[:16]


def load_splits(spec: DataSpec | dict[str, Any]) -> DatasetSplits:
    """Load, map, validate and split the data a ``DataSpec`` describes."""
    if not isinstance(spec, DataSpec):
        spec = DataSpec(**dict(spec))
    raw: dict[str, list[dict[str, Any]]] = {}
    origin: dict[str, str] = {}
    if spec.source == "generator":
        from slmforge.data.generators import generate_splits

        sizes = {k: int(v) for k, v in spec.sizes.items()}
        raw = generate_splits(spec.generator or spec.name, sizes, spec.seed)
        origin = {s: f"generator:{spec.generator or spec.name}(seed={spec.seed})" for s in raw}
    elif spec.source == "files":
        if not spec.train_path or not spec.test_path:
            raise DataError(
                f"data '{spec.name}': source=files needs data.train_path and data.test_path "
                f"(data.validation_path is optional)"
            )
        for split in SPLITS:
            path = getattr(spec, f"{split}_path")
            if path:
                raw[split] = _load_file(path, spec, split)
                origin[split] = str(Path(path).expanduser().resolve())
    elif spec.source == "hub":
        raw = _load_hub(spec)
        origin = {s: f"hub:{spec.hub_path}/{spec.hub_splits[s]}" for s in raw}
    else:
        raise DataError(f"data.source={spec.source} is not one of ['files', 'generator', 'hub']")
    if spec.source != "files":
        # A split file given next to a generator or hub source replaces that split (e.g. evaluate a model
        # trained on built-in data on your own test file: slmforge-evaluate run_dir=<run> data.test_path=...).
        for split in SPLITS:
            path = getattr(spec, f"{split}_path")
            if path:
                raw[split] = _load_file(path, spec, split)
                origin[split] = str(Path(path).expanduser().resolve())

    rows = {s: _canonicalise(r, spec, s, origin.get(s, s)) for s, r in raw.items()}
    if not rows.get("train"):
        raise DataError(f"data '{spec.name}': the train split is empty ({origin.get('train')})")
    if not rows.get("test"):
        raise DataError(f"data '{spec.name}': the test split is empty ({origin.get('test')})")
    if not rows.get("validation"):
        # Seeded cut from train so that model selection never sees the test split.
        train = list(rows["train"])
        random.Random(spec.seed).shuffle(train)
        n_val = max(1, round(len(train) * spec.validation_fraction))
        rows["validation"], rows["train"] = train[:n_val], train[n_val:]
        origin["validation"] = f"{spec.validation_fraction:.0%} of train (seed={spec.seed})"
    # Per-label caps first (balanced learning curves, a quick but still stratified test split), then the
    # overall caps; split i draws with seed + i, so each split's sample never depends on another's settings.
    for i, split in enumerate(SPLITS):
        k = getattr(spec, f"per_label_{split}")
        if k is not None:
            target = _target_key(spec)[0]
            if target != "label":
                raise DataError(
                    f"data '{spec.name}': data.per_label_{split}={k} needs labelled rows, but this data's target "
                    f"is '{target}'; use data.max_{split}_examples to subsample it"
                )
            rows[split] = _per_label(rows[split], int(k), spec.seed + i)
        rows[split] = _subsample(rows[split], getattr(spec, f"max_{split}_examples"), spec.seed + i)
    # After the caps: held-out intents keep their capped share of the test split (per_label_test=2 still
    # draws 2 rows of each held-out intent before they become one out-of-scope label), and minority labels
    # are cut relative to the rows the other labels kept.
    label_changes = _change_labels(rows, spec)
    _check_ids_unique(rows, spec)
    return DatasetSplits(**rows, fingerprint=_fingerprint(rows), origin=origin, label_changes=label_changes)


def _chosen_labels(
    spec: DataSpec, key: str, value: int | list[str], labels: list[str], taken: set[str]
) -> list[str]:
    """``value`` labels: the named ones (each must exist), or that many drawn with ``label_choice_seed``
    from the training labels not already ``taken``."""
    if isinstance(value, bool) or not isinstance(value, (int, str, list, tuple)):
        raise DataError(f"data.{key}={value!r} must be a number of labels or a list of labels")
    if isinstance(value, str):
        value = [value]
    if isinstance(value, int):
        pool = [lab for lab in labels if lab not in taken]
        if not 0 < value < len(pool):
            raise DataError(
                f"data.{key}={value} must be between 1 and {len(pool) - 1} (the training split has "
                f"{len(pool)} labels to choose from)"
            )
        return sorted(random.Random(f"{key}:{spec.label_choice_seed}").sample(pool, value))
    named = [str(x) for x in value]
    unknown = [lab for lab in named if lab not in labels]
    if unknown:
        raise DataError(
            f"data.{key} names label(s) {unknown[:5]} that the training split does not have; "
            f"labels include {labels[:8]}"
        )
    return sorted(set(named))


def _change_labels(rows: dict[str, list[dict[str, Any]]], spec: DataSpec) -> dict[str, Any]:
    """Simulate out-of-scope traffic (``holdout_labels``) and minority classes (``minority_labels``)."""
    if spec.holdout_labels is None and spec.minority_labels is None:
        return {}
    if _target_key(spec)[0] != "label":
        raise DataError(
            f"data '{spec.name}': data.holdout_labels / data.minority_labels need labelled rows (classification)"
        )
    labels = sorted({r["label"] for r in rows["train"]})
    changes: dict[str, Any] = {}
    held: list[str] = []
    if spec.holdout_labels is not None:
        held = _chosen_labels(spec, "holdout_labels", spec.holdout_labels, labels, set())
        oos = str(spec.out_of_scope_label)
        if oos in labels:
            raise DataError(
                f"data.out_of_scope_label={oos!r} is already a training label; name a label the data does not use"
            )
        gone = set(held)
        for split in ("train", "validation"):
            rows[split] = [r for r in rows[split] if r["label"] not in gone]
        rows["test"] = [{**r, "label": oos} if r["label"] in gone else r for r in rows["test"]]
        changes["holdout_labels"] = held
        changes["out_of_scope_label"] = oos
        changes["n_out_of_scope_test"] = sum(r["label"] == oos for r in rows["test"])
    if spec.minority_labels is not None:
        if not 0.0 < float(spec.minority_fraction) <= 1.0:
            raise DataError(f"data.minority_fraction={spec.minority_fraction} must be in (0, 1]")
        minority = _chosen_labels(spec, "minority_labels", spec.minority_labels, labels, set(held))
        rng = random.Random(f"minority:{spec.seed}")
        by_label: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(rows["train"]):
            by_label[r["label"]].append(i)
        drop: set[int] = set()
        kept = {}
        for lab in minority:
            idx = by_label[lab]
            keep = max(1, round(len(idx) * float(spec.minority_fraction)))
            drop.update(set(idx) - set(rng.sample(idx, keep)))
            kept[lab] = keep
        rows["train"] = [r for i, r in enumerate(rows["train"]) if i not in drop]
        changes["minority_labels"] = kept  # label -> training rows kept
        changes["minority_fraction"] = float(spec.minority_fraction)
    return changes


def _check_ids_unique(rows: dict[str, list[dict[str, Any]]], spec: DataSpec) -> None:
    for split, exs in rows.items():
        dup = [k for k, c in Counter(e["id"] for e in exs).items() if c > 1]
        if dup:
            # Ids key predictions across predictors (routing aligns on them): make them unique per split.
            for i, e in enumerate(exs):
                e["id"] = f"{split}-{i}"


def label_counts(rows: list[dict[str, Any]]) -> Counter:
    return Counter(r["label"] for r in rows)
