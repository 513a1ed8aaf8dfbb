"""Grounded entity extraction: every field is a list of spans copied from the input (named-entity style).

An :class:`~slmforge.tasks.extraction.ExtractionTask` whose schema fields are all required lists of strings,
one per entity type (person, location, product, ...). Prompts and training targets are exactly the
extraction task's (compact JSON, every type in schema order, ``[]`` when there is none), so a model trained
as an extraction task is evaluated here unchanged. What this task adds:

- metrics: span precision / recall / F1 per type and micro / macro over types (the extraction metrics'
  multiset scoring of list fields, under these names) and ``groundedness``, the share of predicted spans that
  occur verbatim in the input (:class:`~slmforge.metrics.entities.EntitySpanMetrics`); the primary metric
  is ``span_micro_f1``;
- copy-constrained decoding (``copy_constrained: true`` with ``eval.constrained=true``): a grammar per row
  (:func:`copy_grammar`) lets each string be only a span of that row's text, a run of up to
  ``max_span_words`` whitespace-separated words of it (also with the punctuation at its two ends cut off,
  ``"Paris,"`` -> ``"Paris"``), written JSON-escaped, so every predicted span parses to an exact substring of
  the input: no invented entities. ``copy_constrained: false`` enforces only the JSON schema, to measure the
  copy constraint against plain structured decoding.

Example config (``conf/task/entities.yaml``)::

    task:
      _target_: slmforge.tasks.entities.EntityExtractionTask
      schema:
        person: {type: list, description: "names of people"}
        location: {type: list, description: "places"}
      copy_constrained: true
      max_span_words: 8
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from slmforge.metrics.entities import EntitySpanMetrics, span_groundedness
from slmforge.records import PredictionRow
from slmforge.schema import Schema
from slmforge.schema.grammar import OutputGrammar, lark_grammar
from slmforge.tasks.base import PredictionProtocol, TaskError
from slmforge.tasks.extraction import ExtractionTask

log = logging.getLogger("slmforge")

# Cut from the two ends of a span to give its trimmed variant ("(Paris," -> "Paris").
EDGE_PUNCTUATION = ".,;:!?\"'()[]{}<>"
# The list bound before setup has seen training data (bounded_json_schema's default).
DEFAULT_MAX_LIST_ITEMS = 16
_WORD = re.compile(r"\S+")


def copy_spans(text: str, max_span_words: int) -> list[str]:
    """Every span the copy grammar allows for ``text``, in order of first occurrence, without repeats: each
    run of 1..``max_span_words`` whitespace-separated words, cut from the text as written (the whitespace
    between its words kept), and the same run with :data:`EDGE_PUNCTUATION` cut off both ends when that
    leaves something different and non-empty. Each is an exact substring of ``text``."""
    words = [m.span() for m in _WORD.finditer(text)]
    seen: dict[str, None] = {}
    for i in range(len(words)):
        for j in range(i, min(len(words), i + max_span_words)):
            span = text[words[i][0] : words[j][1]]
            seen.setdefault(span, None)
            trimmed = span.strip(EDGE_PUNCTUATION)
            if trimmed and trimmed != span and not trimmed.isspace():
                seen.setdefault(trimmed.strip(), None)
    return list(seen)


def _json_string(s: str) -> str:
    """How a span is written in the output: the JSON string of the canonical targets."""
    return json.dumps(s, ensure_ascii=False)


def _lark_literal(s: str) -> str:
    """``s`` as a Lark string literal (JSON escapes, which llguidance's Lark reads)."""
    return json.dumps(s, ensure_ascii=False)


def copy_grammar(text: str, names: Sequence[str], max_list_items: int, max_span_words: int) -> OutputGrammar:
    """The copy grammar of one input: compact JSON with every key of ``names`` in order, each a list of at
    most ``max_list_items`` strings, each string one of :func:`copy_spans` written JSON-escaped, e.g.
    ``{"person":[],"location":["Empire State Building","ESB"]}``. ``max_bytes`` is the longest such output
    (every list full of the longest span), so ``max_new_tokens`` of that size always completes."""
    if max_list_items < 1:
        raise TaskError(f"max_list_items must be >= 1, got {max_list_items}")
    if max_span_words < 1:
        raise TaskError(f"max_span_words must be >= 1, got {max_span_words}")
    spans = copy_spans(text, max_span_words)
    written = [_json_string(s) for s in spans]
    if written:
        more = f' ("," SPAN){{0,{max_list_items - 1}}}' if max_list_items > 1 else ""
        rules = f'list: "[" (SPAN{more})? "]"\nSPAN: ' + " | ".join(_lark_literal(w) for w in written) + "\n"
        longest = max(len(w.encode()) for w in written)
        list_bytes = 2 + max_list_items * longest + (max_list_items - 1)
    else:  # no word in the text: every list is empty
        rules = 'list: "[]"\n'
        list_bytes = 2
    keys = [_json_string(n) + ":" for n in names]
    parts = [_lark_literal("{" + keys[0])] + [f"list {_lark_literal(',' + key)}" for key in keys[1:]]
    start = "start: " + " ".join(parts) + ' list "}"\n'
    max_bytes = 2 + sum(len(k.encode()) for k in keys) + (len(keys) - 1) + len(keys) * list_bytes
    return lark_grammar(
        start + rules,
        max_bytes,
        kind="copy",
        spans=len(spans),
        max_list_items=max_list_items,
        max_span_words=max_span_words,
    )


class EntityExtractionTask(ExtractionTask):
    """Named-entity-style extraction: each schema field a required list of strings copied from the input.

    copy_constrained: with ``eval.constrained=true``, restrict every string to a span of the row's input
        (:func:`copy_grammar`); False: constrained decoding enforces only the JSON schema (the extraction
        task's grammar), which is what copy-constrained decoding is measured against.
    max_span_words: the longest span, in whitespace-separated words, the copy grammar allows.
    The other arguments are :class:`ExtractionTask`'s; prompts and targets are exactly its.
    """

    name = "entities"

    def __init__(
        self,
        schema: Schema | Mapping[str, Any],
        *args: Any,
        copy_constrained: bool = True,
        max_span_words: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(schema, *args, **kwargs)
        for f in self.schema.fields:
            item = f.item_spec.type if f.type == "list" else None
            if item != "string":
                kind = f.type if f.type != "list" else f"list of {item}"
                raise TaskError(
                    f"task.schema.{f.name}: entity extraction needs every field to be a list of strings (spans "
                    f"copied from the text), got {kind}; write it as {{type: list}} or use task=extraction"
                )
            if not f.required:
                raise TaskError(
                    f"task.schema.{f.name}: entity types must be required (every type is written, [] when "
                    f"there is none); drop `required: false`"
                )
        if not isinstance(copy_constrained, bool):
            raise TaskError(f"task.copy_constrained must be true or false, got {copy_constrained!r}")
        if isinstance(max_span_words, bool) or not isinstance(max_span_words, int) or max_span_words < 1:
            raise TaskError(f"task.max_span_words must be an integer >= 1, got {max_span_words!r}")
        self.copy_constrained = copy_constrained
        self.max_span_words = max_span_words
        # Gold spans of the training split the copy grammar cannot produce (set by setup).
        self.unreachable_gold: int | None = None
        self.gold_spans: int | None = None
        self._copy_grammars: dict[tuple[str, int, int], OutputGrammar] = {}

    # ------------------------------------------------------------------ data

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:
        """The extraction checks and bounds, then count the training gold spans the copy grammar cannot
        produce (not a span of the text, or longer than ``max_span_words``): a ceiling on recall under
        copy-constrained decoding, logged when there are any."""
        super().setup(train, others)
        if not train:
            return
        total = unreachable = 0
        for ex in train:
            target = json.loads(self.target(ex))
            allowed: set[str] | None = None
            for value in target.values():
                for span in value:
                    total += 1
                    if allowed is None:
                        allowed = set(copy_spans(str(ex.get("text", "")), self.max_span_words))
                    unreachable += span not in allowed
        self.gold_spans, self.unreachable_gold = total, unreachable
        if unreachable:
            log.warning(
                "entities: %d of %d training gold spans are not a span of their text of at most %d words "
                "(task.max_span_words); copy-constrained decoding cannot produce them",
                unreachable, total, self.max_span_words,
            )  # fmt: skip

    def protocol(self) -> PredictionProtocol:
        if not self.copy_constrained:
            return super().protocol()
        return replace(super().protocol(), output_grammar=self.copy_output_grammar, grammar_per_row=True)

    def copy_output_grammar(
        self, example: Mapping[str, Any] | None, options: Mapping[str, Any]
    ) -> OutputGrammar:
        """Row ``example``'s copy grammar (:func:`copy_grammar`). ``options`` (``eval.constraint``) may set
        ``max_list_items`` (default: the bound learned from training, :meth:`value_bounds`) and
        ``max_span_words`` (default: the task's)."""
        if example is None:
            raise TaskError("the copy grammar is per row: it needs the row's example (its input text)")
        unknown = sorted(str(k) for k in options if k not in ("max_list_items", "max_span_words"))
        if unknown:
            raise TaskError(
                f"constraint options {unknown} do not apply to copy-constrained decoding; allowed: "
                f"max_list_items, max_span_words (or set task.copy_constrained=false for the JSON schema's)"
            )
        items = int(
            options.get("max_list_items", self.value_bounds().get("max_list_items", DEFAULT_MAX_LIST_ITEMS))
        )
        words = int(options.get("max_span_words", self.max_span_words))
        text = str(example.get("text", ""))
        key = (text, items, words)
        cached = self._copy_grammars.get(key)
        if cached is None:
            if len(self._copy_grammars) >= 1024:  # one per distinct input: keep memory bounded
                self._copy_grammars.clear()
            cached = self._copy_grammars[key] = copy_grammar(text, self.schema.names, items, words)
        return cached

    # ------------------------------------------------------------------ judging

    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        """:class:`EntitySpanMetrics` over the rows' model text (``raw_output``; ``pred`` if absent),
        groundedness against each row's input ``text``."""
        metric = EntitySpanMetrics(self.schema, self.normalization)
        if rows:
            outputs = [self.parse_output(r.raw_output if r.raw_output is not None else r.pred) for r in rows]
            metric.update(outputs, [r.gold or {} for r in rows], [r.text or "" for r in rows])
        return metric.compute()

    def groundedness(self, raw: Any, text: str) -> tuple[int, int]:
        """(predicted spans, of which grounded) of one output against its input text."""
        return span_groundedness(self.parse_output(raw), text, self.schema)

    @property
    def primary_metric(self) -> str:
        return "span_micro_f1"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "copy_constrained": self.copy_constrained,
            "max_span_words": self.max_span_words,
            "gold_spans": self.gold_spans,
            "unreachable_gold_spans": self.unreachable_gold,
        }
