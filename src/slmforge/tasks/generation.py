"""Constrained generation: free text scored against a reference and checked against output constraints.

Example: product spec sheet in, an on-brand description out that must start with "Meet the ", name the
product and end with the price (see :mod:`slmforge.data.generators.product_descriptions`).

Constraints come from the config (:class:`~slmforge.metrics.generation.Constraints`: required and forbidden
phrases, a regex, word bounds) and, optionally, from each example (``required_phrases_field``, e.g. the
product name and price of that example). Because a per-example phrase list is part of what the answer is
judged against, :meth:`GenerationTask.gold` returns ``{"output": reference, "required_phrases": [...]}``
rather than the bare reference, so ``correct`` and ``compute_metrics`` can be recomputed from a
``predictions.jsonl`` alone.

Constrained decoding (``eval.constrained=true``) enforces the constraints while the text is written:
:meth:`GenerationTask.output_grammar` is a Lark grammar (:mod:`slmforge.schema.text_grammar`) whose texts
all pass the phrases, forbidden phrases, word bounds and, when it translates faithfully, the regex (that
module says what cannot be expressed and what happens then). With per-example phrases the grammar is built
per row (``grammar_per_row``). To keep every output finite, words are at most ``max_word_chars`` long and,
when the constraints set no ``max_words``, the text has at most ``max_words`` words; both default to
bounds learned in :meth:`GenerationTask.setup` (twice the longest word / the most words of a training
output, at least 16) and can be set with the predictor's constraint options (``eval.constraint``). The
grammar needs more llguidance lexer fuel than the engine's default (``OutputGrammar.limits``, which the engine passes on).

Per-example ``correct`` (used by routing and ensembles) is constraint compliance: 1.0 when the output meets
every constraint that applies to it, else 0.0. When no constraint is configured at all it falls back to
whitespace-normalised exact match with the reference, the only binary verdict left. The reference-overlap
metrics (ROUGE-L, chrF, BLEU, token accuracy) are reported by :meth:`GenerationTask.compute_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from slmforge.metrics.generation import Constraints, GenerationMetrics, check_constraints
from slmforge.records import PredictionRow
from slmforge.tasks.base import PredictionProtocol, Task, TaskError, options_from_config

if TYPE_CHECKING:
    from slmforge.schema.grammar import OutputGrammar

# Constraint options the text grammar takes (slmforge.schema.text_grammar.text_grammar).
GRAMMAR_OPTIONS: tuple[str, ...] = ("max_words", "max_word_chars", "max_space_chars")
_GRAMMAR_CACHE_SIZE = 4096


def target_length_bound(
    task: Task, tokenizer: Any, examples: Sequence[dict[str, Any]], margin: int = 8
) -> int:
    """Tokens in the longest target of ``examples`` (+ EOS) plus ``margin``: a ``max_new_tokens`` that lets a
    trained model finish every answer it saw in training without letting a looping one run for long."""
    if not examples:
        raise TaskError("cannot bound the answer length from an empty training split")
    longest = max(len(tokenizer(task.target(ex), add_special_tokens=False)["input_ids"]) for ex in examples)
    return longest + 1 + margin


def _prepare_constraints(d: dict[str, Any]) -> dict[str, Any]:
    for key in ("required_phrases", "forbidden_phrases"):
        if d.get(key) is None:
            d.pop(key, None)
        elif isinstance(d[key], str):
            raise TaskError(f"task.constraints.{key} must be a list of phrases, got the string {d[key]!r}")
        else:
            d[key] = [str(p) for p in d[key]]
    return d


class GenerationTask(Task):
    """Prompt = instruction (+ the constraints in words) + input text; target = the reference output.

    constraints: :class:`Constraints` or a dict of its fields (``required_phrases``, ``regex``,
        ``min_words``, ``max_words``, ``forbidden_phrases``, ``case_sensitive``).
    required_phrases_field: example key holding that example's own required phrases (``None``: none).
    constraints_in_prompt: spell the constraints out in the prompt (helps prompted models; a fine-tuned
        model learns them from the targets anyway). The regex is shown verbatim.
    """

    name = "generation"
    decoding = "generation"
    target_key = "output"
    output_format = "text"

    def __init__(
        self,
        constraints: Constraints | Mapping[str, Any] | None = None,
        required_phrases_field: str | None = "required_phrases",
        instruction: str = "Write the output for the input below.",
        system_prompt: str | None = None,
        constraints_in_prompt: bool = True,
        max_length: int = 512,
    ) -> None:
        super().__init__(system_prompt=system_prompt, instruction=instruction, max_length=max_length)
        self.constraints = options_from_config(Constraints, constraints, "constraints", _prepare_constraints)
        self.required_phrases_field = required_phrases_field
        self.constraints_in_prompt = constraints_in_prompt
        self.max_new_tokens: int | None = None
        # Longest word (characters) and most words of a training output (set by setup): bound the grammar.
        self.longest_word: int | None = None
        self.most_words: int | None = None
        self._grammars: dict[tuple[Any, ...], OutputGrammar] = {}

    # ------------------------------------------------------------------ data

    def setup(self, train: Sequence[dict[str, Any]], others: dict[str, Sequence[dict[str, Any]]]) -> None:
        for split, rows in {"train": train, **others}.items():
            for i, ex in enumerate(rows):
                where = f"{split} split, row {i} (id={ex.get('id', '?')})"
                if not isinstance(ex.get("output"), str) or not ex["output"].strip():
                    raise TaskError(
                        f"{where}: 'output' must be a non-empty string (the reference text), got "
                        f"{ex.get('output')!r}; fix or drop the row, or map your column with data.output_field"
                    )
                try:
                    self.example_phrases(ex)
                except TaskError as e:
                    raise TaskError(f"{where}: {e}") from None
        words = [ex["output"].split() for ex in train]
        self.longest_word = max((len(w) for ws in words for w in ws), default=0)
        self.most_words = max((len(ws) for ws in words), default=0)
        self._grammars.clear()

    def protocol(self) -> PredictionProtocol:
        return replace(
            super().protocol(),
            max_new_tokens=self.max_new_tokens,
            output_grammar=self.output_grammar,
            grammar_per_row=bool(self.required_phrases_field),
        )

    def grammar_bounds(self) -> dict[str, int]:
        """The grammar's default bounds, from :meth:`setup`: words of at most twice the longest training
        word (at least 16 characters) and, when the constraints set no ``max_words``, at most twice the
        most words of a training output (at least 16). Empty before :meth:`setup`."""
        if self.longest_word is None or self.most_words is None:
            return {}
        bounds = {"max_word_chars": max(16, 2 * self.longest_word)}
        if self.constraints.max_words is None:
            bounds["max_words"] = max(16, 2 * self.most_words)
        return bounds

    def output_grammar(self, example: Mapping[str, Any] | None, options: Mapping[str, Any]) -> OutputGrammar:
        """The constrained-decoding grammar of the constraints plus ``example``'s own required phrases
        (:func:`~slmforge.schema.text_grammar.text_grammar`). ``options`` (``max_words``,
        ``max_word_chars``, ``max_space_chars``; null: no bound) override the bounds learned in
        :meth:`setup`; ``max_words`` only applies when the constraints set none. ``example`` is None unless the protocol says
        ``grammar_per_row`` (per-example phrases configured); built once per phrase list and options."""
        from slmforge.schema.text_grammar import text_grammar

        unknown = sorted(set(options) - set(GRAMMAR_OPTIONS))
        if unknown:
            raise TaskError(
                f"constraint options {unknown} are not known to the generation task; allowed: {list(GRAMMAR_OPTIONS)}"
            )
        bounds = {**self.grammar_bounds(), **{k: None if v is None else int(v) for k, v in options.items()}}
        phrases = tuple(self.example_phrases(example)) if example is not None else ()
        key = (phrases, tuple(sorted(bounds.items())))
        cached = self._grammars.get(key)
        if cached is None:
            if len(self._grammars) >= _GRAMMAR_CACHE_SIZE:
                self._grammars.clear()
            try:
                cached = self._grammars[key] = text_grammar(self.constraints, phrases, **bounds)
            except ValueError as e:
                raise TaskError(f"constraint options {dict(options)}: {e}") from None
        return cached

    def set_length_bound(self, tokenizer: Any, train: Sequence[dict[str, Any]]) -> int:
        """Set (and return) ``max_new_tokens`` = longest training target in tokens + EOS + 8."""
        self.max_new_tokens = target_length_bound(self, tokenizer, train)
        self.answer_tokens = self.max_new_tokens
        return self.max_new_tokens

    def example_phrases(self, example: Mapping[str, Any]) -> list[str]:
        """This example's own required phrases (empty without ``required_phrases_field``)."""
        if not self.required_phrases_field:
            return []
        phrases = example.get(self.required_phrases_field)
        if phrases is None:
            return []
        if isinstance(phrases, str) or not isinstance(phrases, Sequence):
            raise TaskError(
                f"'{self.required_phrases_field}' must be a list of phrases, got {phrases!r}; "
                f"set task.required_phrases_field=null to ignore it"
            )
        return [str(p) for p in phrases]

    # ------------------------------------------------------------------ prompts

    def _constraint_lines(self, example: dict[str, Any]) -> list[str]:
        c = self.constraints
        lines = []
        phrases = [*c.required_phrases, *self.example_phrases(example)]
        if phrases:
            lines.append("Include these exact phrases: " + "; ".join(phrases))
        if c.min_words is not None and c.max_words is not None:
            lines.append(f"Use between {c.min_words} and {c.max_words} words.")
        elif c.min_words is not None:
            lines.append(f"Use at least {c.min_words} words.")
        elif c.max_words is not None:
            lines.append(f"Use at most {c.max_words} words.")
        if c.forbidden_phrases:
            lines.append("Never use these phrases: " + "; ".join(c.forbidden_phrases))
        if c.regex is not None:
            lines.append(f"The output must match this regular expression: {c.regex}")
        return lines

    def user_content(self, example: dict[str, Any]) -> str:
        parts = [self.instruction]
        if self.constraints_in_prompt:
            parts.extend(self._constraint_lines(example))
        parts.append(f"Input:\n{example['text']}")
        return "\n".join(parts)

    def target(self, example: dict[str, Any]) -> str:
        return str(example["output"])

    def gold(self, example: dict[str, Any]) -> dict[str, Any]:
        return {"output": str(example["output"]), "required_phrases": self.example_phrases(example)}

    # ------------------------------------------------------------------ judging

    def parse(self, raw: str) -> tuple[Any, dict[str, Any]]:
        """The text itself, stripped (a generation needs no parsing). Never raises."""
        return ("" if raw is None else str(raw)).strip(), {}

    @staticmethod
    def _gold_parts(gold: Any) -> tuple[str, list[str]]:
        # Rows written by older code (or by hand) may hold the bare reference text.
        if isinstance(gold, Mapping):
            return str(gold.get("output", "")), [str(p) for p in gold.get("required_phrases") or []]
        return ("" if gold is None else str(gold)), []

    def constraint_results(self, pred: Any, gold: Any) -> dict[str, bool]:
        """Which applicable constraints ``pred`` meets, e.g. ``{"required_phrases": True, "regex": False}``."""
        _, phrases = self._gold_parts(gold)
        return check_constraints("" if pred is None else str(pred), self.constraints, phrases)

    def correct(self, pred: Any, gold: Any) -> float:
        """1.0 when every applicable constraint holds; without any constraint, whitespace-normalised exact
        match with the reference."""
        results = self.constraint_results(pred, gold)
        if results:
            return float(all(results.values()))
        reference, _ = self._gold_parts(gold)
        return float(" ".join(str(pred or "").split()) == " ".join(reference.split()))

    def row_details(self, raw: str, gold: Any) -> dict[str, Any]:
        """Per-example constraint verdicts for ``predictions.jsonl``."""
        return {"constraints": self.constraint_results(self.parse(raw)[0], gold)}

    def compute_metrics(self, rows: Sequence[PredictionRow]) -> dict[str, Any]:
        """ROUGE-L, chrF, BLEU, exact match, token accuracy, compliance overall and per constraint."""
        metric = GenerationMetrics(self.constraints)
        if not rows:
            return metric.compute()
        preds, refs, phrases = [], [], []
        for r in rows:
            pred = r.pred if isinstance(r.pred, str) else self.parse(r.raw_output or "")[0]
            ref, extra = self._gold_parts(r.gold)
            preds.append(pred)
            refs.append(ref)
            phrases.append(extra)
        metric.update(preds, refs, phrases)
        return metric.compute()

    @property
    def primary_metric(self) -> str:
        return "rougeL"

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "constraints": asdict(self.constraints),
            "required_phrases_field": self.required_phrases_field,
            "max_new_tokens": self.max_new_tokens,
            "grammar_bounds": self.grammar_bounds(),
        }
