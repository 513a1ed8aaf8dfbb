"""Extraction metrics: JSON validity, schema adherence, per-field P/R/F1 and exact match.

Scoring one field of one example (``pred`` from the model's object, ``gold`` from the dataset, both
passed through :func:`~slmforge.schema.spec.normalize_value`; "empty" means absent, null or blank):

=============================================  ==========================================
case                                           counts
=============================================  ==========================================
pred empty, gold empty                         nothing
pred empty, gold non-empty                     fn
pred non-empty, gold empty                     fp
pred non-empty and equal to gold               tp
pred non-empty and wrong                       fp + fn (one wrong value, one missed value)
list fields (multisets ``P``, ``G``)           tp = abs(P & G), fp = abs(P - G), fn = abs(G - P)
list of objects (multisets of whole items)     as lists: two items are equal when all their
                                               sub-fields are (each normalised by its spec)
object fields                                  each sub-field scored as a field of its own,
                                               named by its path (``buyer.name``, recursively)
=============================================  ==========================================

Malformed outputs never raise and count as wrong for the fields they affect: with no JSON object every
field's prediction is empty; a value of the wrong type (strict, as :func:`parse_output` checks: a number
field holding ``"12.50"``, a date not written YYYY-MM-DD, a value outside the enum) is a non-empty wrong
value. Extra keys in the record or in an object field do not touch field scores (they are caught by schema
adherence). A sub-field of an object breaks the schema when its own value does, or when an enclosing object
does (missing, null or not an object); a list breaks it when any item does (an item of the wrong type, or an
item object with a bad, missing or unknown key: the item is not a valid item), and then counts as wrong
whole, like a list of strings holding a number.

"Fields" here are the scored fields (:func:`scored_fields`): the schema's fields with every object replaced
by its sub-fields, so ``per_field`` is keyed by dotted names (``buyer.name``) for nested schemas and by the
field names, as before, for flat ones.

Per-field exact match is 1 when the field is correct: normalised equality (lists as multisets), and
False for every field of an output without a JSON object, and for a field that breaks the schema (even
when the gold is empty). Record exact match needs every scored field correct.

P/R/F1 use ``tp/(tp+fp)``, ``tp/(tp+fn)``, ``2tp/(2tp+fp+fn)``, 0 for a zero denominator, except that
a field with nothing to extract and nothing extracted (tp = fp = fn = 0) scores 1.0: there was nothing to
get wrong. Micro averages pool the counts of all fields; macro averages are means over fields.

All states are count tensors reduced with ``sum``, so metrics accumulate across batches and processes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchmetrics
from torch import Tensor

from slmforge.schema import (
    FieldSpec,
    Normalization,
    ParsedOutput,
    Schema,
    normalize_value,
    parse_output,
)

__all__ = [
    "FieldExtractionMetrics",
    "JSONValidityRate",
    "SchemaAdherenceRate",
    "ScoredField",
    "field_counts",
    "score_example",
    "scored_fields",
]


def _as_parsed(outputs: Sequence[ParsedOutput | str], schema: Schema | None) -> list[ParsedOutput]:
    parsed = []
    for o in outputs:
        if isinstance(o, ParsedOutput):
            parsed.append(o)
        elif schema is not None:
            parsed.append(parse_output(o, schema))
        else:
            raise TypeError(
                f"expected ParsedOutput (see slmforge.schema.spec.parse_output), got {type(o).__name__}"
            )
    return parsed


@dataclass(frozen=True)
class ScoredField:
    """One scored field: ``name`` is its dotted path (``buyer.name``), ``path`` the keys that lead to it."""

    name: str
    path: tuple[str, ...]
    spec: FieldSpec


def _leaves(spec: FieldSpec, path: tuple[str, ...]) -> list[ScoredField]:
    if spec.type == "object":
        return [leaf for sub in spec.fields or [] for leaf in _leaves(sub, (*path, sub.name))]
    return [ScoredField(".".join(path), path, spec)]


def scored_fields(schema: Schema) -> list[ScoredField]:
    """The fields metrics score, in schema order: objects are replaced by their sub-fields (recursively),
    lists (of anything) and scalars are scored whole. For a flat schema: its fields."""
    return [leaf for f in schema.fields for leaf in _leaves(f, (f.name,))]


def _get(obj: Any, path: tuple[str, ...]) -> Any:
    """The value at ``path`` (None when a key is missing or an enclosing value is not an object)."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _touches(loc: tuple[str | int, ...], path: tuple[str, ...]) -> bool:
    # An error inside the field, or on an object that encloses it; an unknown key beside it is neither.
    n = min(len(loc), len(path))
    return tuple(loc[:n]) == path[:n]


def _pred_value(parsed: ParsedOutput, path: tuple[str, ...]) -> tuple[Any, bool]:
    """(value, schema_ok_for_this_field); value None when there is no object or no such key."""
    if not parsed.is_object or parsed.parsed is None:
        return None, False
    value = _get(parsed.parsed, path)
    top_ok = bool(parsed.field_ok.get(path[0], False))
    if top_ok or len(path) == 1 or not parsed.error_locs:
        return value, top_ok
    return value, not any(_touches(loc, path) for loc in parsed.error_locs)


def field_counts(
    parsed: ParsedOutput,
    gold: Mapping[str, Any],
    spec: FieldSpec,
    norm: Normalization,
    *,
    strict_types: bool = True,
    path: Sequence[str] | None = None,
) -> tuple[int, int, int, bool]:
    """(tp, fp, fn, correct) for one field of one example; see the module docstring for the rules.

    ``path`` locates the field in the record (default: the top-level field ``spec.name``); an object field
    sums the counts of its sub-fields and is correct when all of them are.
    With ``strict_types=False`` a value of the wrong type is normalised and compared like any other
    (useful to see how much of a prompted model's loss is formatting rather than content).
    """
    where = tuple(path) if path else (spec.name,)
    if spec.type == "object":
        tp = fp = fn = 0
        all_ok = True
        for leaf in _leaves(spec, where):
            a, b, c, ok = field_counts(
                parsed, gold, leaf.spec, norm, strict_types=strict_types, path=leaf.path
            )
            tp, fp, fn, all_ok = tp + a, fp + b, fn + c, all_ok and ok
        return tp, fp, fn, all_ok
    value, type_ok = _pred_value(parsed, where)
    has_object = parsed.is_object and parsed.parsed is not None
    gold_n = normalize_value(_get(gold, where) if gold is not None else None, spec, norm)
    # A schema violation (wrong type, bad date, value outside the enum, null for a required field) is
    # wrong under strict typing whatever the gold says.
    violation = has_object and not type_ok and strict_types

    if spec.type == "list":
        if violation and value is not None:
            n_pred = len([v for v in value if v not in (None, "")]) if isinstance(value, list) else 1
            return 0, max(n_pred, 1), len(gold_n), False
        pred_c = Counter(normalize_value(value, spec, norm))
        gold_c = Counter(gold_n)
        tp = sum((pred_c & gold_c).values())
        fp = sum((pred_c - gold_c).values())
        fn = sum((gold_c - pred_c).values())
        return tp, fp, fn, has_object and not violation and pred_c == gold_c

    pred_n = normalize_value(value, spec, norm)
    gold_empty = gold_n is None
    if pred_n is None:
        return 0, 0, (0 if gold_empty else 1), has_object and not violation and gold_empty
    if violation or pred_n != gold_n:
        return 0, 1, (0 if gold_empty else 1), False
    return 1, 0, 0, True


def score_example(
    parsed: ParsedOutput | str,
    gold: Mapping[str, Any],
    schema: Schema,
    norm: Normalization | None = None,
    *,
    strict_types: bool = True,
) -> dict[str, bool]:
    """Per-field correctness of one prediction (for ``predictions.jsonl``'s ``details``), keyed by the
    scored fields' names (dotted for the sub-fields of objects, see :func:`scored_fields`).

    ``correct`` for the row can be taken as the mean of the values (a fraction of fields right).
    """
    norm = norm or Normalization()
    p = parsed if isinstance(parsed, ParsedOutput) else parse_output(parsed, schema)
    return {
        f.name: field_counts(p, gold, f.spec, norm, strict_types=strict_types, path=f.path)[3]
        for f in scored_fields(schema)
    }


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    if tp == 0 and fp == 0 and fn == 0:
        return 1.0, 1.0, 1.0  # nothing to extract and nothing extracted
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


class _RateMetric(torchmetrics.Metric):
    """Fraction of outputs with some property; sum states so it accumulates across batches/devices."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    hits: Tensor
    total: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("hits", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _hit(self, o: ParsedOutput) -> bool:
        raise NotImplementedError

    def update(self, outputs: Sequence[ParsedOutput]) -> None:
        parsed = _as_parsed(outputs, None)
        self.hits += sum(self._hit(o) for o in parsed)
        self.total += len(parsed)

    def compute(self) -> float:
        total = int(self.total)
        return int(self.hits) / total if total else math.nan


class JSONValidityRate(_RateMetric):
    """Fraction of outputs from which a JSON value could be read (``ParsedOutput.valid_json``)."""

    def _hit(self, o: ParsedOutput) -> bool:
        return o.valid_json


class SchemaAdherenceRate(_RateMetric):
    """Fraction of outputs that are a JSON object matching the schema exactly (``schema_ok``)."""

    def _hit(self, o: ParsedOutput) -> bool:
        return o.schema_ok


class FieldExtractionMetrics(torchmetrics.Metric):
    """Everything for an extraction task in one metric: validity, adherence, field P/R/F1, exact match.

    ``update(parsed, gold)``: ``parsed`` are :class:`ParsedOutput` (raw strings are parsed for you),
    ``gold`` the gold records (dicts keyed by field name). ``compute()`` returns plain Python::

        {"n", "json_validity", "schema_adherence",
         "field_micro_precision", "field_micro_recall", "field_micro_f1",
         "field_macro_precision", "field_macro_recall", "field_macro_f1",
         "record_exact_match", "per_field": {name: {"precision", "recall", "f1", "exact_match"}}}
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    tp: Tensor
    fp: Tensor
    fn: Tensor
    exact: Tensor
    n: Tensor
    n_valid_json: Tensor
    n_schema_ok: Tensor
    n_record_exact: Tensor

    def __init__(
        self,
        schema: Schema,
        normalization: Normalization | None = None,
        *,
        strict_types: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.schema = schema
        self.normalization = normalization or Normalization()
        self.strict_types = strict_types
        self.scored = scored_fields(schema)
        k = len(self.scored)
        for name in ("tp", "fp", "fn", "exact"):
            self.add_state(name, torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        for name in ("n", "n_valid_json", "n_schema_ok", "n_record_exact"):
            self.add_state(name, torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, parsed: Sequence[ParsedOutput | str], gold: Sequence[Mapping[str, Any]]) -> None:
        outputs = _as_parsed(parsed, self.schema)
        if len(outputs) != len(gold):
            raise ValueError(f"{len(outputs)} outputs but {len(gold)} gold records")
        k = len(self.scored)
        counts = torch.zeros(4, k, dtype=torch.long)
        n_exact = 0
        for out, g in zip(outputs, gold, strict=True):
            all_ok = True
            for j, f in enumerate(self.scored):
                tp, fp, fn, ok = field_counts(
                    out, g or {}, f.spec, self.normalization, strict_types=self.strict_types, path=f.path
                )
                counts[0, j] += tp
                counts[1, j] += fp
                counts[2, j] += fn
                counts[3, j] += int(ok)
                all_ok &= ok
            n_exact += int(all_ok)
        counts = counts.to(self.tp.device)
        self.tp += counts[0]
        self.fp += counts[1]
        self.fn += counts[2]
        self.exact += counts[3]
        self.n += len(outputs)
        self.n_valid_json += sum(o.valid_json for o in outputs)
        self.n_schema_ok += sum(o.schema_ok for o in outputs)
        self.n_record_exact += n_exact

    def compute(self) -> dict[str, Any]:
        n = int(self.n)
        tp, fp, fn, exact = (t.tolist() for t in (self.tp, self.fp, self.fn, self.exact))
        if n == 0:
            nan = math.nan
            keys = ["json_validity", "schema_adherence", "record_exact_match"]
            keys += [f"field_{a}_{m}" for a in ("micro", "macro") for m in ("precision", "recall", "f1")]
            out: dict[str, Any] = {"n": 0, **dict.fromkeys(keys, nan)}
            out["per_field"] = {
                f.name: {"precision": nan, "recall": nan, "f1": nan, "exact_match": nan} for f in self.scored
            }
            return out
        per_field: dict[str, dict[str, float]] = {}
        for j, f in enumerate(self.scored):
            p, r, f1 = _prf(tp[j], fp[j], fn[j])
            per_field[f.name] = {"precision": p, "recall": r, "f1": f1, "exact_match": exact[j] / n}
        micro_p, micro_r, micro_f1 = _prf(sum(tp), sum(fp), sum(fn))
        k = len(per_field)
        return {
            "n": n,
            "json_validity": int(self.n_valid_json) / n,
            "schema_adherence": int(self.n_schema_ok) / n,
            "field_micro_precision": micro_p,
            "field_micro_recall": micro_r,
            "field_micro_f1": micro_f1,
            "field_macro_precision": sum(v["precision"] for v in per_field.values()) / k,
            "field_macro_recall": sum(v["recall"] for v in per_field.values()) / k,
            "field_macro_f1": sum(v["f1"] for v in per_field.values()) / k,
            "record_exact_match": int(self.n_record_exact) / n,
            "per_field": per_field,
        }
