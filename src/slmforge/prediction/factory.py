"""The predictor factory: which local predictor a task and ``eval.*`` call for.

Classification is never parsed from free text: it is exact label scoring or a search over the label trie
(``label_decoding``: auto | scoring | trie (best-first: exactly scoring's argmax) | trie_greedy (greedy
over the trie: can miss it); auto picks the trie above ``TRIE_ABOVE_LABELS`` labels). Other tasks:
batched (optionally schema-constrained) generation.
"""

from __future__ import annotations

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


def build_predictor(
    lm: LoadedModel,
    task: Task,
    batch_size: int,
    shots: Any = (),
    constrained: bool = False,
    label_decoding: str = "auto",
) -> Predictor:
    """The local predictor for ``task``'s declared decoding (see the module docstring)."""
    protocol = task.protocol()
    if protocol.decoding == "scoring":
        if label_decoding not in LABEL_DECODINGS:
            raise ConfigError(f"eval.label_decoding={label_decoding!r} is not one of {list(LABEL_DECODINGS)}")
        if label_decoding == "auto":
            label_decoding = "trie" if len(protocol.labels or ()) > TRIE_ABOVE_LABELS else "scoring"
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

        return LabelScorer(lm.model, lm.tokenizer, task, batch_size=batch_size, shots=shots)
    from slmforge.prediction.generation import GenerationPredictor

    return GenerationPredictor(
        lm.model, lm.tokenizer, task, batch_size=batch_size, shots=shots, constrained=constrained
    )
