"""Constrained decoding: at every step only tokens that keep the output a prefix of the task's grammar are
allowed, so an extraction always parses and validates, a copy-constrained span always occurs in the input,
a generation meets the constraints a grammar can express.

Engine: llguidance (``llguidance``, maintained by Microsoft/guidance-ai; also behind vLLM, SGLang and
llama.cpp structured outputs), through its public API: ``LLMatcher`` per row, ``LLExecutor`` filling a
batch of token bitmasks in parallel. Chosen over xgrammar (also installable) because it takes both JSON
Schemas and Lark grammars with regex intersection/negation in one engine, which the tasks need: JSON for
extraction, Lark for text constraints and for spans copied from the input (a grammar per row, compiled in
~0.3 ms); its masks come from a token trie walk, so every tokenisation of an allowed string stays allowed
(lm-format-enforcer, used before, rejected the canonical ``.",`` token after a value ending in ``.``), and
a mask costs well under a millisecond for a 49k vocabulary (``scripts/bench_extract_speed.py``).

What a task allows is an :class:`~slmforge.schema.grammar.OutputGrammar` (its module says how JSON
outputs are bounded so decoding terminates); ``PredictionProtocol.output_grammar(example, options)`` gives
a row's grammar. :class:`GrammarConstraint` compiles each distinct grammar once and copies the compiled
matcher per row. The generation loop asks a session for ``mask(generated, rows)``: each row's matcher
consumes the tokens chosen since the last call, then all live rows' bitmasks are filled in one parallel
call and unpacked into a ``[rows, vocab]`` bool tensor.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor

from slmforge.schema.grammar import OutputGrammar

# (tokenizer, vocab size) -> llguidance tokenizer: building one serialises the tokenizer (~0.4 s for 49k).
_LL_TOKENIZERS: weakref.WeakKeyDictionary[Any, dict[int, Any]] = weakref.WeakKeyDictionary()
_BITS = torch.arange(32, dtype=torch.int32)


def ll_tokenizer(tokenizer: Any, vocab_size: int | None = None) -> Any:
    """llguidance's tokenizer for a Hugging Face fast tokenizer, cached per tokenizer and vocabulary size
    (the model's logits may be wider than the tokenizer: padded embedding matrices)."""
    import llguidance.hf

    per_size = _LL_TOKENIZERS.setdefault(tokenizer, {})
    key = int(vocab_size or len(tokenizer))
    if key not in per_size:
        per_size[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=max(key, len(tokenizer)))
    return per_size[key]


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """``[rows, ceil(V/32)]`` int32 bitmask -> ``[rows, V]`` bool (bit ``i % 32`` of word ``i // 32``)."""
    bits = (bitmask.unsqueeze(-1) >> _BITS) & 1
    return bits.view(bitmask.shape[0], -1)[:, :vocab_size].bool()


def allowed_mask(
    generated: Sequence[Sequence[int] | None],
    vocab_size: int,
    device: torch.device | str,
    allowed_ids: Callable[[Sequence[int]], Any],
) -> torch.Tensor:
    """``[rows, vocab]`` bool from each row's generated tokens: ``allowed_ids(tokens)`` for a live row, every
    token for a finished (``None``) row. For constraints without an engine (the label trie)."""
    out = torch.zeros((len(generated), vocab_size), dtype=torch.bool)
    for r, ids in enumerate(generated):
        if ids is None:
            out[r] = True
        else:
            out[r, allowed_ids(ids)] = True
    return out.to(device)


class ConstraintError(RuntimeError):
    """A grammar that does not compile, or a token the grammar refused (a bug: the mask allowed it)."""


class GrammarConstraint:
    """Allowed-token masks for outputs that must match a grammar, possibly one grammar per row.

    grammar_for: ``example -> OutputGrammar``; called once with ``None`` unless ``per_row`` (then once per
        row with its example: e.g. spans copied from that row's input).
    ``session(vocab_size, device, contexts)`` starts one batch; ``contexts`` are its examples, in row order.
    A row-independent grammar is validated here, so a bad one fails before any decoding.
    """

    def __init__(
        self,
        tokenizer: Any,
        grammar_for: Callable[[dict[str, Any] | None], OutputGrammar],
        per_row: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.grammar_for = grammar_for
        self.per_row = per_row
        self._compiled: dict[tuple[str, int], Any] = {}  # (grammar, vocab size) -> a fresh matcher to copy
        self._executor: Any | None = None
        self.grammar: OutputGrammar | None = None if per_row else grammar_for(None)
        self.last_grammar: OutputGrammar | None = None
        if self.grammar is not None:
            self.matcher(self.grammar, len(tokenizer))

    @classmethod
    def static(cls, tokenizer: Any, grammar: OutputGrammar) -> GrammarConstraint:
        """The same grammar for every row."""
        return cls(tokenizer, lambda _example: grammar)

    def grammar_of(self, example: dict[str, Any] | None) -> OutputGrammar:
        return self.grammar if self.grammar is not None else self.grammar_for(example)

    @property
    def max_tokens(self) -> int | None:
        """The longest output a row-independent grammar allows, in tokens (every token adds at least one
        byte, so its byte bound will do); None for per-row or unbounded grammars."""
        return self.grammar.max_bytes if self.grammar is not None else None

    def matcher(self, grammar: OutputGrammar, vocab_size: int) -> Any:
        """A fresh matcher for ``grammar``: compiled once per grammar, then copied (copies are ~1 µs)."""
        from llguidance import LLMatcher, LLParserLimits

        key = (grammar.grammar, vocab_size)
        template = self._compiled.get(key)
        if template is None:
            limits = LLParserLimits(**grammar.limits) if grammar.limits else None
            template = LLMatcher(
                ll_tokenizer(self.tokenizer, vocab_size), grammar.grammar, log_level=0, limits=limits
            )
            if template.is_error():
                raise ConstraintError(
                    f"output grammar ({grammar.source}) does not compile: {template.get_error()}"
                )
            if len(self._compiled) >= 256:  # per-row grammars (copy constraints): keep memory bounded
                self._compiled.clear()
            self._compiled[key] = template
        return template.deep_copy()

    def executor(self) -> Any:
        from llguidance import LLExecutor

        if self._executor is None:
            self._executor = LLExecutor()
        return self._executor

    def session(
        self,
        vocab_size: int,
        device: torch.device | str = "cpu",
        contexts: Sequence[dict[str, Any] | None] | None = None,
    ) -> GrammarSession:
        return GrammarSession(self, vocab_size, device, contexts)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": "llguidance", "per_row": self.per_row}
        grammar = self.grammar or self.last_grammar  # per row: the last row's, to show its kind and options
        if grammar is not None:
            out.update({"source": grammar.source, "max_bytes": grammar.max_bytes, **grammar.summary})
            if grammar.limits:
                out["llguidance_limits"] = dict(grammar.limits)
        return out


class GrammarSession:
    """One matcher per row of a batch; ``mask(generated, rows)`` advances them and returns the masks."""

    def __init__(
        self,
        constraint: GrammarConstraint,
        vocab_size: int,
        device: torch.device | str,
        contexts: Sequence[dict[str, Any] | None] | None,
    ) -> None:
        self.constraint = constraint
        self.vocab_size = vocab_size
        self.device = device
        self.contexts = list(contexts) if contexts is not None else None
        self._matchers: dict[int, Any] = {}
        self._consumed: dict[int, int] = {}
        self._grammars: dict[int, OutputGrammar] = {}

    def _matcher(self, row: int) -> Any:
        m = self._matchers.get(row)
        if m is None:
            m = self._matchers[row] = self.constraint.matcher(self.grammar(row), self.vocab_size)
            self._consumed[row] = 0
        return m

    def grammar(self, row: int) -> OutputGrammar:
        """Row ``row``'s grammar (built once per session for per-row grammars)."""
        if not self.constraint.per_row:
            return self.constraint.grammar_of(None)
        if row not in self._grammars:
            example = self.contexts[row] if self.contexts is not None and row < len(self.contexts) else None
            if example is None:
                raise ConstraintError(
                    "a per-row grammar needs each row's example (contexts) to build its mask"
                )
            self._grammars[row] = self.constraint.last_grammar = self.constraint.grammar_of(example)
        return self._grammars[row]

    @property
    def max_tokens(self) -> int | None:
        """The longest output any row of this batch may produce, in tokens (None: some row unbounded)."""
        n = len(self.contexts) if self.contexts is not None else 0
        bounds = (
            [self.grammar(r).max_bytes for r in range(n)]
            if self.constraint.per_row
            else [self.constraint.max_tokens]
        )
        return (
            None if not bounds or any(b is None for b in bounds) else max(b for b in bounds if b is not None)
        )

    def advance(self, row: int, generated: Sequence[int]) -> Any:
        """Row ``row``'s matcher after ``generated`` (its tokens so far, prompt excluded)."""
        m = self._matcher(row)
        done = self._consumed[row]
        if len(generated) < done:  # a caller restarting a row: replay from scratch
            m = self._matchers[row] = self.constraint.matcher(self.grammar(row), self.vocab_size)
            done = 0
        for tok in generated[done:]:
            if not m.consume_token(int(tok)):
                raise ConstraintError(f"row {row}: token {tok} refused by the grammar: {m.get_error()}")
        self._consumed[row] = len(generated)
        return m

    def bitmask(
        self, generated: Sequence[Sequence[int] | None], rows: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``[len(generated), ceil(vocab/32)]`` int32 bitmask of allowed next tokens (bit ``t % 32`` of word
        ``t // 32``); ``rows[b]`` is the batch row (its example in ``contexts``) of position ``b`` (default
        ``b``). A ``None`` entry (a finished row) allows everything."""
        from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask_par

        rows = list(rows) if rows is not None else list(range(len(generated)))
        bitmask = allocate_token_bitmask(len(generated), self.vocab_size)  # all ones
        live = [
            (self.advance(row, ids), b)
            for b, (row, ids) in enumerate(zip(rows, generated, strict=True))
            if ids is not None
        ]
        if live:
            fill_next_token_bitmask_par(self.constraint.executor(), live, bitmask)
            for m, b in live:
                if m.is_error():  # else its mask allows only EOS and the row would end silently
                    raise ConstraintError(f"row {rows[b]}: the grammar engine stopped: {m.get_error()}")
        return bitmask

    def mask(
        self, generated: Sequence[Sequence[int] | None], rows: Sequence[int] | None = None
    ) -> torch.Tensor:
        """:meth:`bitmask` as a ``[len(generated), vocab]`` bool tensor on the session's device."""
        return unpack_bitmask(self.bitmask(generated, rows), self.vocab_size).to(self.device)


class GrammarLogitsProcessor(LogitsProcessor):
    """A ``transformers`` LogitsProcessor for ``model.generate(..., logits_processor=[...])`` with a
    row-independent grammar. The first call fixes the prompt width; the tokens after it are generated."""

    def __init__(self, constraint: GrammarConstraint) -> None:
        self.constraint = constraint
        self._session: GrammarSession | None = None
        self._prompt_width = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._session is None:
            self._session = self.constraint.session(scores.shape[-1], scores.device)
            self._prompt_width = input_ids.shape[1]
        generated = input_ids[:, self._prompt_width :].tolist()
        allowed = self._session.mask(generated)
        return scores.masked_fill(~allowed, float("-inf"))
