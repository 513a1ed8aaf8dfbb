"""Structured extraction: a document in, one JSON object with the configured fields out (nested objects and lists
of objects allowed).

The schema (see :mod:`slmforge.schema.spec`) is the single source of truth: it is described in the prompt,
renders gold records as the one canonical training target (compact JSON, schema key order, typed values),
checks model output (:func:`~slmforge.schema.spec.parse_output`, never raising) and drives constrained
decoding (:meth:`ExtractionTask.output_grammar`). Metrics are field-level precision/recall/F1 after
normalisation, JSON validity, schema adherence and record exact match
(:class:`~slmforge.metrics.extraction.FieldExtractionMetrics`); the per-example ``correct`` is the
fraction of schema fields the prediction got right.

Example config::

    task:
      _target_: slmforge.tasks.extraction.ExtractionTask
      schema:
        vendor: {type: string}
        date: {type: date}
        total: {type: number}
        currency: {type: enum, values: [USD, EUR, GBP]}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

from slmforge.metrics.extraction import FieldExtractionMetrics, score_example
from slmforge.records import PredictionRow
from slmforge.schema import Normalization, ParsedOutput, Schema, canonical_json, parse_output
from slmforge.schema.grammar import OutputGrammar, schema_grammar
from slmforge.tasks.base import PredictionProtocol, Task, TaskError, options_from_config
from slmforge.tasks.generation import target_length_bound


class ExtractionTask(Task):
    """Prompt = instruction (+ field list) + document; target = the canonical JSON of the gold fields.

    schema: ``{field: {type, required, values, description}}`` (see :meth:`Schema.from_config`) or a Schema.
    schema_in_prompt: list the fields, their types and formats in the prompt. Needed zero-shot (the model
        cannot guess the keys); a fine-tuned model learns them and could drop it to save prompt tokens.
    normalization: :class:`Normalization` options for metrics (case, whitespace, numbers, dates, dayfirst).
    Gold records are read from ``example["fields"]``; keys that are not in the schema are ignored, so a
    schema may extract a subset of the annotated fields.
    """

    name = "extraction"
    decoding = "generation"
    target_key = "fields"
    # Predictors stop generating at the end of the first complete JSON object (see prediction.generation).
    output_format = "json"

    def __init__(
        self,
        schema: Schema | Mapping[str, Any],
        schema_in_prompt: bool = True,
        normalization: Normalization | Mapping[str, Any] | None = None,
        system_prompt: str | None = None,
        instruction: str = "Extract the fields below from the document. Reply with one JSON object only.",
        max_length: int = 512,
    ) -> None:
        super().__init__(system_prompt=system_prompt, instruction=instruction, max_length=max_length)
        if isinstance(schema, Schema):
            self.schema = schema
        else:
            try:
                self.schema = Schema.from_config(schema)
            except ValueError as e:
                raise TaskError(f"task.schema: {e}") from e
        self.schema_in_prompt = schema_in_prompt
        self.normalization = options_from_config(Normalization, normalization, "normalization")
        self.max_new_tokens: int | None = None
        # Longest string value and list seen in training (set by setup); bound constrained decoding.
        self.longest_string: int | None = None
        self.longest_list: int | None = None
        self._grammars: dict[tuple[tuple[str, Any], ...], OutputGrammar] = {}

    # ------------------------------------------------------------------ data

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:
        """Check that every gold record renders as a target that fits the schema, naming the first bad row,
        and record the longest string value and list in the training split, nested values included (see
        :meth:`value_bounds`)."""
        longest_string, longest_list = 0, 0
        for split, rows in {"train": train, **others}.items():
            for i, ex in enumerate(rows):
                where = f"{split} split, row {i} (id={ex.get('id', '?')})"
                fields = ex.get("fields")
                if not isinstance(fields, Mapping):
                    raise TaskError(
                        f"{where}: 'fields' must be a mapping of field name -> gold value, got "
                        f"{type(fields).__name__}; map your label column with data.fields_field"
                    )
                try:
                    target = json.loads(
                        canonical_json(fields, self.schema, dayfirst=self.normalization.dayfirst)
                    )
                except ValueError as e:
                    raise TaskError(
                        f"{where}: gold record does not fit task.schema: {e}. Fix or drop the record, mark "
                        f"the field `required: false`, or change its type in task.schema"
                    ) from None
                if split == "train":
                    # Every string and list at any depth (sub-fields of objects, items of lists of objects).
                    stack: list[Any] = list(target.values())
                    while stack:
                        value = stack.pop()
                        if isinstance(value, list):
                            longest_list = max(longest_list, len(value))
                            stack.extend(value)
                        elif isinstance(value, dict):
                            stack.extend(value.values())
                        elif isinstance(value, str):
                            longest_string = max(longest_string, len(value))
        if train:
            self.longest_string, self.longest_list = longest_string, longest_list

    def set_length_bound(self, tokenizer: Any, train: Sequence[dict[str, Any]]) -> int:
        """Set (and return) ``max_new_tokens`` = longest training target in tokens + EOS + 8."""
        self.max_new_tokens = target_length_bound(self, tokenizer, train)
        self.answer_tokens = self.max_new_tokens
        return self.max_new_tokens

    def protocol(self) -> PredictionProtocol:
        return replace(
            super().protocol(),
            schema=self.schema,
            max_new_tokens=self.max_new_tokens,
            value_bounds=self.value_bounds(),
            output_grammar=self.output_grammar,
        )

    def output_grammar(self, example: Mapping[str, Any] | None, options: Mapping[str, Any]) -> OutputGrammar:
        """The constrained-decoding grammar: the schema's JSON Schema with the bounds learned in
        :meth:`setup` (``options`` override them; see :func:`~slmforge.schema.grammar.schema_grammar`).
        The same for every row, built once per set of bounds."""
        bounds = {**self.value_bounds(), **dict(options)}
        key = tuple(sorted(bounds.items()))
        cached = self._grammars.get(key)
        if cached is None:
            try:
                cached = self._grammars[key] = schema_grammar(self.schema, **bounds)
            except TypeError as e:
                raise TaskError(f"constraint options {sorted(options)}: {e}") from None
        return cached

    def value_bounds(self) -> dict[str, int]:
        """Bounds for constrained decoding (:func:`~slmforge.schema.grammar.bounded_json_schema`):
        twice the longest string value and list of the training split, with floors of 32 characters and
        4 items. Loose enough never to cut a plausible value, tight enough that a model looping inside a
        string stops soon. Empty before :meth:`setup`."""
        if self.longest_string is None or self.longest_list is None:
            return {}
        return {
            "max_string_chars": max(32, 2 * self.longest_string),
            "max_list_items": max(4, 2 * self.longest_list),
        }

    # ------------------------------------------------------------------ prompts

    def user_content(self, example: dict[str, Any]) -> str:
        parts = [self.instruction]
        if self.schema_in_prompt:
            parts.append("Fields:\n" + self.schema.describe())
        parts.append(f"Document:\n{example['text']}")
        return "\n".join(parts)

    def target(self, example: dict[str, Any]) -> str:
        try:
            return canonical_json(example["fields"], self.schema, dayfirst=self.normalization.dayfirst)
        except ValueError as e:
            raise TaskError(f"example {example.get('id', '?')}: {e}") from None

    # ------------------------------------------------------------------ judging

    def parse_output(self, raw: Any) -> ParsedOutput:
        """The full :class:`ParsedOutput` for ``raw`` (a string, or an already parsed dict)."""
        if isinstance(raw, Mapping):
            raw = json.dumps(dict(raw), ensure_ascii=False)
        return parse_output("" if raw is None else str(raw), self.schema)

    def parse(self, raw: str) -> tuple[Any, dict[str, Any]]:
        """(the JSON object or None, {"valid_json", "schema_ok", "errors"}). Never raises."""
        p = self.parse_output(raw)
        return (p.parsed if p.is_object else None), {
            "valid_json": p.valid_json,
            "schema_ok": p.schema_ok,
            "errors": p.errors,
        }

    def field_correct(self, pred: Any, gold: Mapping[str, Any] | None) -> dict[str, bool]:
        """Per-field correctness of ``pred`` (raw text, parsed dict or None) against the gold record."""
        return score_example(self.parse_output(pred), gold or {}, self.schema, self.normalization)

    def correct(self, pred: Any, gold: Any) -> float:
        """Fraction of schema fields right (a missing or unparseable prediction scores 0)."""
        verdicts = self.field_correct(pred, gold)
        return sum(verdicts.values()) / len(verdicts)

    def row_details(self, raw: str, gold: Any) -> dict[str, Any]:
        """What ``predictions.jsonl`` keeps per example: field verdicts, validity and the schema errors."""
        p = self.parse_output(raw)
        return {
            "field_correct": score_example(p, gold or {}, self.schema, self.normalization),
            "valid_json": p.valid_json,
            "schema_ok": p.schema_ok,
            "errors": p.errors,
        }

    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        """:class:`FieldExtractionMetrics` over the rows' model text (``raw_output``; ``pred`` if absent)."""
        metric = FieldExtractionMetrics(self.schema, self.normalization)
        if rows:
            outputs = [self.parse_output(r.raw_output if r.raw_output is not None else r.pred) for r in rows]
            metric.update(outputs, [r.gold or {} for r in rows])
        return metric.compute()

    @property
    def primary_metric(self) -> str:
        return "field_micro_f1"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "fields": self.schema.names,
            "schema_in_prompt": self.schema_in_prompt,
            "normalization": asdict(self.normalization),
            "max_new_tokens": self.max_new_tokens,
            "value_bounds": self.value_bounds(),
        }
