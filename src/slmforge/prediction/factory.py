"""The predictor factory: which local predictor a task and ``eval.*`` call for.

Classification is never parsed from free text: it is exact label scoring or a search over the label trie
(``label_decoding``: auto | scoring | trie (best-first: exactly scoring's argmax) | trie_greedy (greedy
over the trie: can miss it); auto picks the trie above ``TRIE_ABOVE_LABELS`` labels). Other tasks:
batched (optionally schema-constrained) generation.

``scoring`` (``eval.scoring``: raw | length_norm | calibrated, see
:mod:`slmforge.prediction.label_scoring`) other than raw always uses label scoring: the trie search
prunes on raw log-probabilities (a prefix bounds its labels' raw score, not their length-normalised or
calibrated one), so it can only find the raw argmax. The predictor's ``describe()`` then says
``decoding: label_scoring`` and ``scoring``, and names the trie decoding that was asked for
(``label_decoding_requested``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from slmforge.errors import ConfigError

if TYPE_CHECKING:
    from slmforge.modeling.loading import LoadedModel
    from slmforge.prediction.base import Predictor
    from slmforge.tasks.base import Task

# Above this many labels, ``label_decoding=auto`` searches the label trie (exact) instead of scoring every
# label: scoring appends all labels' tokens to each prompt (cost grows with the label count), the search
# runs only the branches that could win (a confident model: its answer's path). BENCHMARKS.md has the
# measurements behind it.
TRIE_ABOVE_LABELS = 16
LABEL_DECODINGS = ("auto", "scoring", "trie", "trie_greedy")

log = logging.getLogger("slmforge")


def build_predictor(
    lm: LoadedModel,
    task: Task,
    batch_size: int,
    shots: Any = (),
    constrained: bool = False,
    label_decoding: str = "auto",
    scoring: str = "raw",
    constraint_options: Mapping[str, Any] | None = None,
) -> Predictor:
    """The local predictor for ``task``'s declared decoding (see the module docstring).
    ``constraint_options``: bounds for the task's output grammar (``eval.constraint``), with ``constrained``."""
    from slmforge.prediction.label_scoring import check_scoring

    check_scoring(scoring)
    protocol = task.protocol()
    if protocol.decoding == "scoring":
        if label_decoding not in LABEL_DECODINGS:
            raise ConfigError(f"eval.label_decoding={label_decoding!r} is not one of {list(LABEL_DECODINGS)}")
        requested = label_decoding
        if label_decoding == "auto":
            label_decoding = "trie" if len(protocol.labels or ()) > TRIE_ABOVE_LABELS else "scoring"
        if scoring != "raw" and label_decoding != "scoring":
            if requested != "auto":
                log.warning(
                    "eval.scoring=%s needs every label's score; eval.label_decoding=%s can only find the raw "
                    "argmax, so label scoring is used instead", scoring, requested,
                )  # fmt: skip
            label_decoding = "scoring"
        if label_decoding in ("trie", "trie_greedy"):
            from slmforge.prediction.label_trie import LabelTriePredictor

            return LabelTriePredictor(
                lm.model,
                lm.tokenizer,
                task,
                batch_size=batch_size,
                shots=shots,
                exact=label_decoding == "trie",
            )
        from slmforge.prediction.label_scoring import LabelScorer

        scorer = LabelScorer(
            lm.model, lm.tokenizer, task, batch_size=batch_size, shots=shots, scoring=scoring
        )
        if requested in ("trie", "trie_greedy"):
            scorer.label_decoding_requested = requested
        return scorer
    if scoring != "raw":
        log.warning(
            "eval.scoring=%s applies to classification only; task %s generates", scoring, protocol.name
        )
    from slmforge.prediction.generation import GenerationPredictor

    return GenerationPredictor(
        lm.model,
        lm.tokenizer,
        task,
        batch_size=batch_size,
        shots=shots,
        constrained=constrained,
        constraint_options=dict(constraint_options or {}),
    )
