"""k-shot selection: deterministic, from the training split only, never the evaluated example."""

from __future__ import annotations

import pytest

from slmforge.data.generators import generate_splits
from slmforge.errors import ConfigError
from slmforge.prediction.shots import select_shots


@pytest.fixture(scope="module")
def splits():
    return generate_splits("tickets", {"train": 120, "test": 30}, 0)


@pytest.mark.parametrize("how", ["random", "stratified"])
def test_fixed_shots_are_deterministic_and_from_train(splits, how):
    a = select_shots(splits["train"], 6, how, seed=1)
    b = select_shots(splits["train"], 6, how, seed=1)
    assert [s["id"] for s in a] == [s["id"] for s in b]
    assert len(a) == 6
    train_ids = {ex["id"] for ex in splits["train"]}
    test_ids = {ex["id"] for ex in splits["test"]}
    assert {s["id"] for s in a} <= train_ids and not ({s["id"] for s in a} & test_ids)
    assert [s["id"] for s in select_shots(splits["train"], 6, how, seed=2)] != [s["id"] for s in a]


def test_stratified_covers_distinct_labels_first(splits):
    shots = select_shots(splits["train"], 8, "stratified", seed=0)
    assert len({s["label"] for s in shots}) == 8  # 8 categories, one shot each


def test_similar_shots_pick_nearest_training_examples_and_skip_the_input(splits):
    select = select_shots(splits["train"], 3, "similar", seed=0)
    probe = splits["train"][5]
    picked = select(probe)
    assert len(picked) == 3 and probe["id"] not in {p["id"] for p in picked}
    assert select(probe) == picked  # deterministic
    for ex in splits["test"][:10]:
        assert {p["id"] for p in select(ex)} <= {t["id"] for t in splits["train"]}
    # A near-copy of a training text finds that text first.
    twin = dict(splits["train"][7], id="other", text=splits["train"][7]["text"] + " thanks")
    assert select(twin)[0]["id"] == splits["train"][7]["id"]


def test_unknown_selection_is_a_config_error(splits):
    with pytest.raises(ConfigError, match="shot_selection"):
        select_shots(splits["train"], 2, "nearest", seed=0)
