"""Simulated out-of-scope traffic (data.holdout_labels) and minority classes (data.minority_labels)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from slmforge.data.sources import DataSpec, label_counts, load_splits
from slmforge.errors import DataError

LABELS = {f"intent_{i}": 20 for i in range(8)}


def _write(path: Path, split: str) -> str:
    rows = [
        {"id": f"{split}-{label}-{i}", "text": f"{split} {label} request {i}", "label": label}
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


def test_held_out_labels_leave_train_and_validation_and_become_out_of_scope_in_test(files: dict) -> None:
    splits = load_splits(_spec(files, holdout_labels=3))
    held = splits.label_changes["holdout_labels"]
    assert len(held) == 3 and set(held) <= set(LABELS)
    assert not set(held) & set(label_counts(splits.train)) and not set(held) & set(
        label_counts(splits.validation)
    )
    test = label_counts(splits.test)
    assert test["out_of_scope"] == 60 == splits.label_changes["n_out_of_scope_test"]
    assert not set(held) & set(test) and len(test) == 6  # 5 kept intents + out_of_scope
    # the choice does not move with the run seed (every seed of a recipe sees the same held-out intents)
    assert load_splits(_spec(files, holdout_labels=3, seed=7)).label_changes["holdout_labels"] == held
    assert (
        load_splits(_spec(files, holdout_labels=3, label_choice_seed=1)).label_changes["holdout_labels"]
        != held
    )


def test_named_held_out_labels_and_a_custom_out_of_scope_label(files: dict) -> None:
    splits = load_splits(_spec(files, holdout_labels=["intent_0"], out_of_scope_label="none_of_these"))
    assert splits.label_changes["holdout_labels"] == ["intent_0"]
    assert label_counts(splits.test)["none_of_these"] == 20
    assert "intent_0" not in label_counts(splits.train)


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"holdout_labels": 8}, "data.holdout_labels=8 must be between 1 and 7"),
        ({"holdout_labels": ["nope"]}, "data.holdout_labels names label(s) ['nope']"),
        ({"holdout_labels": 1, "out_of_scope_label": "intent_3"}, "already a training label"),
        ({"minority_labels": 2, "minority_fraction": 0.0}, "data.minority_fraction=0.0 must be in (0, 1]"),
        ({"holdout_labels": 1.5}, "must be a number of labels or a list"),
    ],
)
def test_bad_label_changes_name_the_key(files: dict, kw: dict, fragment: str) -> None:
    with pytest.raises(DataError, match=None) as e:
        load_splits(_spec(files, **kw))
    assert fragment in str(e.value)


def test_minority_labels_keep_their_share_of_train_only(files: dict) -> None:
    splits = load_splits(_spec(files, minority_labels=2, minority_fraction=0.1))
    kept = splits.label_changes["minority_labels"]
    assert sorted(kept.values()) == [2, 2]  # 10% of 20 rows
    train = label_counts(splits.train)
    assert all(train[lab] == 2 for lab in kept) and all(train[lab] == 20 for lab in LABELS if lab not in kept)
    assert label_counts(splits.test) == Counter(LABELS)  # evaluation keeps the real mix


def test_minority_labels_are_chosen_apart_from_held_out_ones(files: dict) -> None:
    splits = load_splits(_spec(files, holdout_labels=4, minority_labels=3))
    assert not set(splits.label_changes["holdout_labels"]) & set(splits.label_changes["minority_labels"])


def test_no_label_changes_by_default(files: dict) -> None:
    assert load_splits(_spec(files)).label_changes == {}


def test_label_changes_come_after_the_per_label_caps(files: dict) -> None:
    splits = load_splits(_spec(files, holdout_labels=3, per_label_test=2, per_label_train=10, minority_labels=1,
                               minority_fraction=0.2))  # fmt: skip
    test = label_counts(splits.test)
    assert test["out_of_scope"] == 6 and len(splits.test) == 16  # 2 rows of each of the 8 intents
    assert sorted(label_counts(splits.train).values()) == [2, 10, 10, 10, 10]  # 20% of the capped 10
