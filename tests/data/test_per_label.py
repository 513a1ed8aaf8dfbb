"""Per-label subsampling of every split: at most k rows per label, seeded, each split independent."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from slmforge.data.sources import DataSpec, label_counts, load_splits
from slmforge.errors import DataError

LABELS = {"billing": 12, "bug": 7, "login": 3}  # rows per label in each split file


def _write(path: Path, split: str) -> str:
    rows = [
        {"id": f"{split}-{label}-{i}", "text": f"{split} {label} ticket number {i}", "label": label}
        for label, n in LABELS.items()
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    return {f"{s}_path": _write(tmp_path / f"{s}.jsonl", s) for s in ("train", "validation", "test")}


def _spec(files: dict[str, str], **kw: object) -> DataSpec:
    return DataSpec(name="t", source="files", **files, **kw)  # type: ignore[arg-type]


def test_each_split_keeps_at_most_k_rows_per_label(files: dict[str, str]) -> None:
    splits = load_splits(_spec(files, per_label_train=5, per_label_validation=4, per_label_test=2))
    assert label_counts(splits.train) == Counter({"billing": 5, "bug": 5, "login": 3})
    assert label_counts(splits.validation) == Counter({"billing": 4, "bug": 4, "login": 3})
    assert label_counts(splits.test) == Counter({"billing": 2, "bug": 2, "login": 2})
    # rows keep their split (ids say where they came from) and never repeat
    for split in ("train", "validation", "test"):
        ids = [r["id"] for r in splits.get(split)]
        assert len(set(ids)) == len(ids) and all(i.startswith(f"{split}-") for i in ids)


def test_deterministic_seeded_and_independent_per_split(files: dict[str, str]) -> None:
    kw = {"per_label_validation": 4, "per_label_test": 2}
    a = load_splits(_spec(files, **kw))
    b = load_splits(_spec(files, **kw))
    assert [r["id"] for r in a.test] == [r["id"] for r in b.test]
    assert [r["id"] for r in a.validation] == [r["id"] for r in b.validation]
    assert a.fingerprint == b.fingerprint
    other_seed = load_splits(_spec(files, seed=1, **kw))
    assert {r["id"] for r in other_seed.test} != {r["id"] for r in a.test}
    # capping train does not change which test rows are drawn; without a cap a split stays whole
    capped_train = load_splits(_spec(files, per_label_train=1, **kw))
    assert [r["id"] for r in capped_train.test] == [r["id"] for r in a.test]
    assert len(a.train) == sum(LABELS.values())


def test_zero_per_label_leaves_the_split_empty_like_a_zero_overall_cap(files: dict[str, str]) -> None:
    assert load_splits(_spec(files, per_label_validation=0)).validation == []
    assert load_splits(_spec(files, max_validation_examples=0)).validation == []


def test_per_label_then_overall_cap(files: dict[str, str]) -> None:
    splits = load_splits(_spec(files, per_label_test=3, max_test_examples=4))
    assert len(splits.test) == 4
    assert max(label_counts(splits.test).values()) <= 3


def test_validation_cut_from_train_is_capped_per_label_too(files: dict[str, str]) -> None:
    no_val = {k: v for k, v in files.items() if k != "validation_path"}
    splits = load_splits(_spec(no_val, validation_fraction=0.5, per_label_validation=1))
    assert set(label_counts(splits.validation).values()) == {1}
    assert sorted(label_counts(splits.validation)) == sorted(LABELS)


def test_per_label_on_unlabelled_data_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}", "fields": {"a": i}}) + "\n" for i in range(4)))
    spec = DataSpec(
        name="x", source="files", train_path=str(path), test_path=str(path),
        label_field=None, fields_field="fields", per_label_test=2,
    )  # fmt: skip
    with pytest.raises(DataError, match=r"per_label_test=2 needs labelled rows.*max_test_examples"):
        load_splits(spec)
