"""Entity (span) extraction metrics: span P/R/F1 per type, micro and macro, and groundedness.

Each schema field is an entity type holding a list of spans. Span scoring is the extraction metrics' list
scoring (:class:`~slmforge.metrics.extraction.FieldExtractionMetrics`: per type, the predicted and gold
spans are multisets after normalisation; tp = their intersection, fp = predicted not in gold, fn = gold not
predicted), reported under the names entity extraction uses:

- ``span_micro_precision`` / ``span_micro_recall`` / ``span_micro_f1``: counts pooled over types (the
  usual NER score, and the primary metric);
- ``span_macro_*``: means over types, each type's score as the extraction metrics define it (a type with
  nothing to find and nothing predicted scores 1.0);
- ``per_type``: ``{type: {"precision", "recall", "f1", "gold", "predicted"}}`` (``gold`` / ``predicted``:
  span counts, so a reader sees which types are rare).

Groundedness is about the input, not the gold: the share of predicted spans (every non-empty item of a
schema list field of the output's JSON object, repeats counted) that occur verbatim (case and whitespace as
written) in the row's input text. A non-string item is ungrounded. With no predicted span it is 1.0 (nothing
was invented). ``predicted_spans`` and ``ungrounded_spans`` are the counts behind it. Copy-constrained
decoding makes it 1.0 by construction; free decoding shows how often a model invents or rewrites entities.

All the extraction metrics (``json_validity``, ``schema_adherence``, ``field_*``, ``record_exact_match``,
``per_field``) are kept alongside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from slmforge.metrics.extraction import FieldExtractionMetrics, _as_parsed
from slmforge.schema import ParsedOutput, Schema

__all__ = ["EntitySpanMetrics", "span_groundedness"]


def span_groundedness(parsed: ParsedOutput, text: str, schema: Schema) -> tuple[int, int]:
    """(predicted spans, grounded spans) of one output: the non-empty items of its schema list fields, and
    how many of them are strings occurring verbatim in ``text``."""
    if not parsed.is_object or parsed.parsed is None:
        return 0, 0
    predicted = grounded = 0
    for name in schema.names:
        value = parsed.parsed.get(name)
        if value is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if item is None or (isinstance(item, str) and not item.strip()):
                continue
            predicted += 1
            grounded += isinstance(item, str) and item in text
    return predicted, grounded


class EntitySpanMetrics(FieldExtractionMetrics):
    """:class:`FieldExtractionMetrics` plus the span names and groundedness (module docstring).

    ``update(parsed, gold, texts)``: ``texts`` are the rows' input texts (groundedness is measured against
    them). ``compute()`` adds ``span_{micro,macro}_{precision,recall,f1}``, ``per_type``, ``groundedness``,
    ``predicted_spans``, ``ungrounded_spans`` and ``gold_spans`` to the extraction metrics.
    """

    spans: Tensor
    grounded: Tensor

    def __init__(self, schema: Schema, *args: Any, **kwargs: Any) -> None:
        super().__init__(schema, *args, **kwargs)
        for name in ("spans", "grounded"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(  # type: ignore[override]
        self,
        parsed: Sequence[ParsedOutput | str],
        gold: Sequence[Mapping[str, Any]],
        texts: Sequence[str],
    ) -> None:
        outputs = _as_parsed(parsed, self.schema)
        if len(texts) != len(outputs):
            raise ValueError(f"{len(outputs)} outputs but {len(texts)} input texts")
        super().update(outputs, gold)
        for out, text in zip(outputs, texts, strict=True):
            predicted, grounded = span_groundedness(out, text or "", self.schema)
            self.spans += predicted
            self.grounded += grounded

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        for avg in ("micro", "macro"):
            for m in ("precision", "recall", "f1"):
                out[f"span_{avg}_{m}"] = out[f"field_{avg}_{m}"]
        tp, fp, fn = (t.tolist() for t in (self.tp, self.fp, self.fn))
        out["per_type"] = {
            f.name: {
                **{m: out["per_field"][f.name][m] for m in ("precision", "recall", "f1")},
                "gold": tp[j] + fn[j],
                "predicted": tp[j] + fp[j],
            }
            for j, f in enumerate(self.schema.fields)
        }
        spans, grounded = int(self.spans), int(self.grounded)
        out["groundedness"] = grounded / spans if spans else 1.0
        out["predicted_spans"] = spans
        out["ungrounded_spans"] = spans - grounded
        out["gold_spans"] = sum(tp) + sum(fn)
        return out
