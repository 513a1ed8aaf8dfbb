"""build_predictor picks the classification decoder from eval.label_decoding (auto by label count)."""

from __future__ import annotations

import pytest

from slmforge.errors import ConfigError
from slmforge.modeling.loading import ModelSpec, load_model
from slmforge.prediction.factory import TRIE_ABOVE_LABELS, build_predictor
from slmforge.prediction.label_scoring import LabelScorer
from slmforge.prediction.label_trie import LabelTriePredictor
from slmforge.tasks.classification import ClassificationTask


@pytest.fixture(scope="module")
def lm():
    return load_model(ModelSpec(name="tiny", source="tiny", seed=0))


def _task(n_labels: int) -> ClassificationTask:
    return ClassificationTask(labels=[f"label {i}" for i in range(n_labels)])


def test_auto_scores_few_labels_and_searches_the_trie_above_the_threshold(lm) -> None:
    few = build_predictor(lm, _task(TRIE_ABOVE_LABELS), batch_size=4, label_decoding="auto")
    many = build_predictor(lm, _task(TRIE_ABOVE_LABELS + 1), batch_size=4, label_decoding="auto")
    assert type(few) is LabelScorer
    assert isinstance(many, LabelTriePredictor) and many.exact


def test_explicit_choices(lm) -> None:
    assert type(build_predictor(lm, _task(3), batch_size=4, label_decoding="scoring")) is LabelScorer
    trie = build_predictor(lm, _task(3), batch_size=4, label_decoding="trie")
    greedy = build_predictor(lm, _task(3), batch_size=4, label_decoding="trie_greedy")
    assert trie.exact and not greedy.exact
    assert trie.describe()["decoding"] == "label_trie_exact"
    assert greedy.describe()["decoding"] == "label_trie"


def test_unknown_choice_names_the_key_and_the_options(lm) -> None:
    with pytest.raises(ConfigError, match=r"eval\.label_decoding='beam'.*trie_greedy"):
        build_predictor(lm, _task(3), batch_size=4, label_decoding="beam")


@pytest.mark.parametrize("decoding", ["auto", "trie", "trie_greedy"])
def test_scorings_other_than_raw_use_label_scoring(lm, decoding) -> None:
    many = _task(TRIE_ABOVE_LABELS + 1)  # auto would search the trie
    pred = build_predictor(lm, many, batch_size=4, label_decoding=decoding, scoring="calibrated")
    assert type(pred) is LabelScorer
    described = pred.describe()
    assert described["decoding"] == "label_scoring" and described["scoring"] == "calibrated"
    assert described.get("label_decoding_requested") == (None if decoding == "auto" else decoding)


def test_trie_and_raw_scoring_report_raw(lm) -> None:
    assert build_predictor(lm, _task(3), batch_size=4, label_decoding="trie").describe()["scoring"] == "raw"
    assert (
        build_predictor(lm, _task(3), batch_size=4, label_decoding="scoring").describe()["scoring"] == "raw"
    )


def test_unknown_scoring_names_the_key_and_the_options(lm) -> None:
    with pytest.raises(ConfigError, match=r"eval\.scoring='norm'.*calibrated"):
        build_predictor(lm, _task(3), batch_size=4, scoring="norm")


def test_constraint_options_reach_the_grammar(lm) -> None:
    """eval.constraint bounds the extraction grammar; an unknown option names itself."""
    from slmforge.data.generators import invoices
    from slmforge.errors import TaskError
    from slmforge.tasks.extraction import ExtractionTask

    task = ExtractionTask(invoices.SCHEMA)
    task.setup(invoices.generate(8, seed=0), {})
    default = build_predictor(lm, task, batch_size=4, constrained=True)
    tight = build_predictor(
        lm, task, batch_size=4, constrained=True, constraint_options={"max_string_chars": 7}
    )
    assert default.describe()["constraint"]["max_string_chars"] == task.value_bounds()["max_string_chars"]
    assert tight.describe()["constraint"]["max_string_chars"] == 7
    with pytest.raises(TaskError, match="max_strings"):
        build_predictor(lm, task, batch_size=4, constrained=True, constraint_options={"max_strings": 7})
