"""Prompt masking, padding and window collation: token-level checks."""

from __future__ import annotations

import pytest

from slmforge.modeling.loading import ModelSpec, load_tokenizer
from slmforge.prompting import render_prompt
from slmforge.tasks.classification import ClassificationTask
from slmforge.training.batching import IGNORE_INDEX, WindowCollator, WindowSampler, encode_example, pad_rows


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(ModelSpec(name="tiny", source="tiny"))


@pytest.fixture
def task():
    t = ClassificationTask(system_prompt="Be brief.", instruction="Classify.")
    t.setup([{"label": "billing"}, {"label": "shipping"}], {})
    return t


def test_prompt_is_masked_and_answer_plus_eos_supervised(tokenizer, task):
    ex = {"id": "1", "text": "Where is my parcel?", "label": "shipping"}
    row = encode_example(task, tokenizer, ex, max_length=512)
    prompt_ids = tokenizer(render_prompt(tokenizer, task.messages(ex)), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer("shipping", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row.input_ids == prompt_ids + answer_ids
    assert row.labels == [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    assert row.n_supervised == len(answer_ids)
    # The supervised tokens decode to exactly the label and the chat template's end-of-turn token.
    supervised = [t for t in row.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == "shipping" + tokenizer.eos_token
    # The prompt ends with the assistant marker of the chat template, so the answer starts a turn.
    assert tokenizer.decode(prompt_ids).endswith("<|im_start|>assistant\n")


def test_overlong_prompt_is_cut_but_answer_kept(tokenizer, task):
    ex = {"id": "1", "text": "word " * 600, "label": "billing"}
    row = encode_example(task, tokenizer, ex, max_length=128)
    assert len(row.input_ids) == 128
    answer_ids = tokenizer("billing", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row.input_ids[-len(answer_ids) :] == answer_ids
    assert [t for t in row.labels if t != IGNORE_INDEX] == answer_ids


def test_pad_rows_right_pads_to_multiple(tokenizer, task):
    rows = [
        encode_example(task, tokenizer, {"id": str(i), "text": "x " * (i * 5 + 1), "label": "billing"}, 512)
        for i in range(3)
    ]
    batch = pad_rows(rows, pad_id=tokenizer.pad_token_id, multiple_of=8)
    longest = max(len(r.input_ids) for r in rows)
    assert batch["input_ids"].shape[1] == -(-longest // 8) * 8
    for i, r in enumerate(rows):
        n = len(r.input_ids)
        assert batch["attention_mask"][i].sum() == n
        assert batch["input_ids"][i, :n].tolist() == r.input_ids
        assert (batch["labels"][i, n:] == IGNORE_INDEX).all()


def test_window_sampler_is_seeded_epoch_aware_and_complete():
    s = WindowSampler(list(range(50)), window_size=8, seed=3)
    first = list(s)
    assert first == list(WindowSampler(list(range(50)), window_size=8, seed=3))
    assert sorted(i for w in first for i in w) == list(range(50))
    assert len(first) == len(s) == 7
    s.set_epoch(1)
    assert list(s) != first


def test_window_collator_counts_supervised_tokens_of_whole_window(tokenizer, task):
    rows = [
        encode_example(task, tokenizer, {"id": str(i), "text": "y " * (i + 1), "label": "shipping"}, 512)
        for i in range(6)
    ]
    window = WindowCollator(rows, tokenizer.pad_token_id, micro_batch_size=4)(list(range(6)))
    assert len(window["micro_batches"]) == 2
    assert window["n_supervised"] == sum(r.n_supervised for r in rows)
    assert window["n_tokens"] == sum(len(r.input_ids) for r in rows)


def test_fit_prompt_keeps_head_and_tail_and_training_cuts_the_same_way():
    from slmforge.prompting import fit_prompt

    ids = list(range(100))
    assert fit_prompt(ids, 200) == ids
    cut = fit_prompt(ids, 40)
    assert cut == list(range(10)) + list(range(70, 100))  # head = budget // 4 = 10, tail = 30
    assert fit_prompt(list(range(1000)), 200)[:32] == list(range(32))  # head capped at 32
    assert len(fit_prompt(list(range(1000)), 200)) == 200


def test_class_balance_weights_and_weighted_sampler_lift_the_small_class():
    from collections import Counter

    from slmforge.training.batching import WindowSampler, class_balance_weights

    labels = ["ham"] * 90 + ["spam"] * 10
    assert class_balance_weights(labels, 0.0) is None
    full = class_balance_weights(labels, 1.0)
    assert full[0] == pytest.approx(1 / 90) and full[-1] == pytest.approx(1 / 10)
    assert class_balance_weights(labels, 0.5)[-1] == pytest.approx(10**-0.5)
    with pytest.raises(ValueError, match=r"train.class_balance=1.5 must be in \[0, 1\]"):
        class_balance_weights(labels, 1.5)
    sampler = WindowSampler([5] * 100, window_size=16, seed=3, weights=full)
    drawn = [labels[i] for w in sampler for i in w]
    assert len(drawn) == 100 and len(sampler) == 7  # same epoch length, with replacement
    share = Counter(drawn)["spam"] / 100
    assert 0.35 < share < 0.65  # ~50% instead of 10%
    again = [i for w in WindowSampler([5] * 100, window_size=16, seed=3, weights=full) for i in w]
    assert again == [i for w in sampler for i in w]  # seeded
    sampler.set_epoch(1)
    assert [i for w in sampler for i in w] != again  # a fresh draw each epoch
