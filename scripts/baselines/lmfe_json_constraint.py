"""Schema-constrained decoding: at every step only tokens that keep the output a prefix of a JSON object
matching the extraction schema are allowed, so the result always parses and validates.

Built on lm-format-enforcer (``lmformatenforcer``, maintained): its ``JsonSchemaParser`` follows the JSON
Schema character by character and its ``TokenEnforcer`` turns that into allowed token ids. Its own
transformers integration (``lmformatenforcer.integrations.transformers``, 0.11.3) does not import under
transformers 5 (it imports the removed ``transformers.tokenization_utils``), so this module builds the
tokenizer tables itself (:func:`tokenizer_data`) and applies the allowed sets as a logits mask:
:class:`JsonConstraint` for our own decoding loop (:mod:`slmforge.prediction.generation`) and
:class:`JsonSchemaLogitsProcessor` for ``model.generate``.

Decoding with random models (which try everything the mask allows) found holes in the library that
produce invalid JSON; they are closed here and covered by tests: byte-piece and control-character tokens
(:func:`tokenizer_data`), numbers like ``0.e9``, trailing commas (:class:`_StrictJsonParser`), and dates
such as ``2023-02-30`` that match ``YYYY-MM-DD`` (a calendar-exact pattern, :data:`CALENDAR_DATE_PATTERN`).

Termination. A constrained model can still loop forever *inside* the format: an untrained (or confused)
model happily writes an endless string or number, greedy decoding never reaches the closing brace within
``max_new_tokens``, and the output is truncated, invalid JSON. :func:`constrained_json_schema` therefore
bounds free strings (``maxLength``) and lists (``maxItems``); the predictor takes these bounds from the
training data (``ExtractionTask.value_bounds``: twice the longest value seen). :class:`_StrictJsonParser`
caps numbers at ``max_number_chars`` characters and whitespace between JSON tokens at ``whitespace``
characters in a row (default 0: compact JSON, the format of the canonical training targets).
Every output is then finite: :func:`max_output_chars` is the worst-case length in characters, which also
bounds the tokens (every allowed token adds at least one character), so ``max_new_tokens`` of at least
that guarantees valid output even from an untrained model. A trained model stops far earlier (its outputs
look like its targets). The price of the bounds: a value longer than ``maxLength`` is cut, and characters
that the tokenizer only spells as byte pieces (e.g. "¥", "₹", emoji for SmolLM2) cannot be produced.

Costs: the allowed set is computed in Python per row and step. Inside free strings lm-format-enforcer
uses a precomputed token list (fast); elsewhere it walks the tokenizer's prefix tree for the few allowed
characters. The one-off tokenizer preparation (~2 s for a 49k vocabulary) is cached per tokenizer.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
import torch
from lmformatenforcer import CharacterLevelParser, JsonSchemaParser
from lmformatenforcer.characterlevelparser import CharacterLevelParserConfig
from lmformatenforcer.tokenenforcer import TokenEnforcer, TokenEnforcerTokenizerData
from transformers import LogitsProcessor

from slmforge.schema import Schema

# A real calendar date in the years 1000-2999: month 01-12, day valid for the month, 29 February only in
# leap years (divisible by 4, centuries only when divisible by 400). parse_output rejects impossible dates, so the
# plain shape pattern of Schema.to_json_schema would let constrained decoding produce invalid output.
CALENDAR_DATE_PATTERN = (
    r"^([12]\d{3}-(0[13578]|1[02])-(0[1-9]|[12]\d|3[01])"
    r"|[12]\d{3}-(0[469]|11)-(0[1-9]|[12]\d|30)"
    r"|[12]\d{3}-02-(0[1-9]|1\d|2[0-8])"
    r"|([12]\d(0[48]|[2468][048]|[13579][26])|(1[26]|2[048])00)-02-29)$"
)

_NUMBER_CHARS = frozenset("0123456789.eE+-")
_DIGITS = "0123456789"
_WHITESPACE = " \t\n\r"


def constrained_json_schema(
    schema: Schema, max_string_chars: int = 128, max_list_items: int = 16
) -> dict[str, Any]:
    """``schema.to_json_schema()`` with the bounds that make constrained decoding terminate (see module doc)."""
    js = copy.deepcopy(schema.to_json_schema())

    def bound(prop: dict[str, Any]) -> None:
        if "anyOf" in prop:
            for option in prop["anyOf"]:
                bound(option)
        elif prop.get("type") == "string" and "pattern" in prop:
            # lm-format-enforcer supports a pattern or a length bound, not both; the pattern is bounded.
            prop["pattern"] = CALENDAR_DATE_PATTERN
        elif prop.get("type") == "string" and "enum" not in prop:
            prop["maxLength"] = max_string_chars
        elif prop.get("type") == "array":
            prop["maxItems"] = max_list_items
            bound(prop["items"])

    for prop in js["properties"].values():
        bound(prop)
    # lm-format-enforcer's pydantic model of JSON Schema does not know "$schema".
    js.pop("$schema", None)
    return js


def max_output_chars(
    schema: Schema,
    max_string_chars: int = 128,
    max_list_items: int = 16,
    max_number_chars: int = 24,
    whitespace: int = 0,
) -> int:
    """Worst-case length in characters of a constrained output, hence of its tokens (EOS aside).

    A string holds at most ``max_string_chars`` characters, each written in at most 2 (an escape such as
    ``\\n``; ``\\uXXXX`` escapes are not allowed); a number may take 2 more characters than its cap to
    complete an exponent.
    """
    ws = whitespace
    string = 2 * max_string_chars + 2
    total = 2 + ws  # braces
    for f in schema.fields:
        if f.type == "number":
            value = max_number_chars + 2
        elif f.type == "date":
            value = 12
        elif f.type == "enum":
            value = 2 + max(len(v) for v in f.values or [""])
        elif f.type == "list":
            value = 2 + max_list_items * (string + 1 + 2 * ws)
        else:
            value = string
        if not f.required:
            value = max(value, 4)  # null
        # "key": value, with whitespace allowed around each token of the structure
        total += len(f.name) + 4 + value + 4 * ws
    return total


# --------------------------------------------------------------------------------------------------
# Tokenizer data (cached: building it decodes the whole vocabulary)

_TOKENIZER_DATA: weakref.WeakKeyDictionary[Any, TokenEnforcerTokenizerData] = weakref.WeakKeyDictionary()


def _is_control(ch: str) -> bool:
    return ord(ch) < 32 or ord(ch) == 127


def tokenizer_data(tokenizer: Any) -> TokenEnforcerTokenizerData:
    """lm-format-enforcer's per-tokenizer tables (cached per tokenizer object; ~2 s for 49k tokens).

    Same recipe as lm-format-enforcer's transformers integration (every non-special token is decoded after
    a ``"0"`` token so word-start tokens keep their leading space), with fixes found by decoding
    with random models, each of which otherwise ended outputs early as unterminated JSON:

    - tokens that decode to nothing and tokens that are only part of a UTF-8 character (byte-level BPE
      spells rare characters such as "¥", "₹" or emoji as 2-4 byte pieces) are dropped: the enforcer
      counts them as no characters (a piece until its character completes, and then more characters
      than it allowed, overrunning a ``maxLength``), so a model can loop on them forever. Constrained
      output cannot contain such characters;
    - tokens holding control characters other than newlines (tabs, ``\\x00``...) are dropped: the library
      lets them into JSON strings, where they are invalid (newlines it checks itself);
    - the parser's alphabet is every character of the vocabulary, not only those that start a token: a
      string character outside the alphabet silently ends the parse.
    """
    cached = _TOKENIZER_DATA.get(tokenizer)
    if cached is not None:
        return cached
    vocab_size = len(tokenizer)
    token_0 = tokenizer.encode("0", add_special_tokens=False)[-1]
    special = set(tokenizer.all_special_ids)
    regular = []
    alphabet: set[str] = set()
    for idx in range(vocab_size):
        if idx in special:
            continue
        after_0 = tokenizer.decode([token_0, idx])[1:]
        alone = tokenizer.decode([idx])
        if not after_0 or "\ufffd" in alone or "\ufffd" in after_0:
            continue  # empty tokens would be allowed everywhere and add nothing: an endless loop
        if any(_is_control(c) and c not in "\n\r" for c in after_0):
            continue
        if "\\u" in after_0:  # \uXXXX escapes would break the length bound (see max_output_chars)
            continue
        regular.append((idx, after_0, len(after_0) > len(alone)))
        alphabet.update(after_0)

    # A weak reference: the cache's value must not keep its key (the tokenizer) alive.
    tokenizer_ref = weakref.ref(tokenizer)

    def decode(ids: list[int]) -> str:
        tok = tokenizer_ref()
        return tok.decode(ids) if tok is not None else ""

    data = TokenEnforcerTokenizerData(regular, decode, tokenizer.eos_token_id, False, vocab_size)
    data.tokenizer_alphabet = "".join(sorted(c for c in alphabet if not _is_control(c)))
    _TOKENIZER_DATA[tokenizer] = data
    return data


# --------------------------------------------------------------------------------------------------
# Strict numbers, no trailing commas, bounded lengths

# JSON number grammar  -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?  as a DFA over these states.
_NUM_NEXT: dict[str, dict[str, str]] = {
    "start": {"-": "minus", "0": "zero", **dict.fromkeys("123456789", "int")},
    "minus": {"0": "zero", **dict.fromkeys("123456789", "int")},
    "zero": {".": "dot", "e": "exp", "E": "exp"},
    "int": {**dict.fromkeys(_DIGITS, "int"), ".": "dot", "e": "exp", "E": "exp"},
    "dot": dict.fromkeys(_DIGITS, "frac"),
    "frac": {**dict.fromkeys(_DIGITS, "frac"), "e": "exp", "E": "exp"},
    "exp": {"+": "exp_sign", "-": "exp_sign", **dict.fromkeys(_DIGITS, "exp_digits")},
    "exp_sign": dict.fromkeys(_DIGITS, "exp_digits"),
    "exp_digits": dict.fromkeys(_DIGITS, "exp_digits"),
}
_NUM_ACCEPTING = frozenset({"zero", "int", "frac", "exp_digits"})


class _StrictJsonParser(CharacterLevelParser):
    """Wraps lm-format-enforcer's JSON parser and closes the holes random models found in it.

    - numbers follow the JSON grammar exactly (the library lets through ``0.e9`` and ``-0.``) and are
      capped at ``max_number_chars`` characters, after which a number may only end (or take the one digit
      it still needs);
    - no trailing comma before ``}`` (the library allows ``{"a":1,}``);
    - whitespace between JSON tokens is capped at ``whitespace`` characters in a row (0: compact JSON,
      like the canonical targets; also far fewer tokens than the pretty-printing many models default to).

    JSON lexical state (inside a string? escaped? inside a number?) is tracked here from the characters
    themselves, which is exact because the inner parser only lets JSON-shaped text through.
    """

    def __init__(
        self,
        inner: CharacterLevelParser,
        max_number_chars: int,
        whitespace: int,
        in_str: bool = False,
        escaped: bool = False,
        num_state: str | None = None,
        num_len: int = 0,
        last_sig: str = "",
        ws_run: int = 0,
    ) -> None:
        self.inner = inner
        self.max_number_chars = max_number_chars
        self.whitespace = whitespace
        self.in_str = in_str
        self.escaped = escaped
        self.num_state = num_state  # DFA state while inside a number, else None
        self.num_len = num_len
        self.last_sig = last_sig  # last non-whitespace character outside strings
        self.ws_run = ws_run  # whitespace characters in a row outside strings

    @property
    def config(self) -> CharacterLevelParserConfig:
        return self.inner.config

    @config.setter
    def config(self, new_config: CharacterLevelParserConfig) -> None:
        # TokenEnforcer installs its config (the tokenizer's alphabet) on the root parser. The library's
        # own whitespace cap (from an environment variable) also counts spaces inside strings; whitespace
        # outside strings is capped here instead, so make the library's cap generous.
        cfg = copy.copy(new_config)
        cfg.max_consecutive_whitespaces = max(cfg.max_consecutive_whitespaces, 64)
        self.inner.config = cfg

    def add_character(self, new_character: str) -> CharacterLevelParser:
        c = new_character
        in_str, escaped, num_state, num_len, last_sig, ws_run = (
            self.in_str,
            self.escaped,
            self.num_state,
            self.num_len,
            self.last_sig,
            self.ws_run,
        )
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str, last_sig = False, '"'
        else:
            if num_state is not None and c in _NUM_NEXT[num_state]:
                num_state, num_len = _NUM_NEXT[num_state][c], num_len + 1
            elif num_state is None and c in _NUM_NEXT["start"]:
                num_state, num_len = _NUM_NEXT["start"][c], 1
            else:
                num_state, num_len = None, 0
            if c == '"':
                in_str = True
            if c in _WHITESPACE:
                ws_run += 1
            else:
                last_sig, ws_run = c, 0
        return _StrictJsonParser(
            self.inner.add_character(c),
            self.max_number_chars,
            self.whitespace,
            in_str,
            escaped,
            num_state,
            num_len,
            last_sig,
            ws_run,
        )

    def _keep(self, c: str) -> bool:
        if self.num_state is not None:
            follow = _NUM_NEXT[self.num_state]
            if c in _NUMBER_CHARS:  # continues the number (or is not allowed at all)
                if c not in follow:
                    return False
                # At the cap only what completes the number is allowed.
                return self.num_len < self.max_number_chars or self.num_state not in _NUM_ACCEPTING
            if self.num_state not in _NUM_ACCEPTING:  # "-", "1.", "1e" cannot end here
                return False
        if c in _WHITESPACE:
            return self.ws_run < self.whitespace
        return not (self.last_sig == "," and c in "}]")

    def get_allowed_characters(self) -> str:
        allowed = self.inner.get_allowed_characters()
        if self.in_str:
            # No \uXXXX escapes: any character can be written as itself, and the length bound holds.
            return allowed.replace("u", "") if self.escaped else allowed
        return "".join(c for c in allowed if self._keep(c))

    def can_end(self) -> bool:
        return self.inner.can_end() and (self.num_state is None or self.num_state in _NUM_ACCEPTING)

    def shortcut_key(self) -> Hashable | None:
        # Only free-text strings have a shortcut, and strings are never filtered here.
        return self.inner.shortcut_key()

    def cache_key(self) -> Hashable | None:
        return None


# --------------------------------------------------------------------------------------------------
# Allowed-token masks


class JsonConstraint:
    """Allowed-token masks for outputs that must be one JSON object matching ``json_schema``.

    ``session()`` starts a fresh enforcer for one batch; its ``mask(generated)`` maps each row's generated
    token ids (prompt excluded) to a ``[rows, vocab]`` bool tensor of allowed next tokens.
    """

    def __init__(
        self,
        tokenizer: Any,
        json_schema: dict[str, Any],
        max_number_chars: int = 24,
        whitespace: int = 0,
        max_chars: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.json_schema = json_schema
        self.max_number_chars = max_number_chars
        self.whitespace = whitespace
        # Worst-case output length in characters (= tokens, EOS aside) when known (see for_schema).
        self.max_chars = max_chars
        self.data = tokenizer_data(tokenizer)

    @classmethod
    def for_schema(
        cls,
        tokenizer: Any,
        schema: Schema,
        max_string_chars: int = 128,
        max_list_items: int = 16,
        max_number_chars: int = 24,
        whitespace: int = 0,
    ) -> JsonConstraint:
        """The constraint for an extraction schema, bounded as :func:`constrained_json_schema` says."""
        js = constrained_json_schema(schema, max_string_chars=max_string_chars, max_list_items=max_list_items)
        max_chars = max_output_chars(schema, max_string_chars, max_list_items, max_number_chars, whitespace)
        return cls(tokenizer, js, max_number_chars, whitespace, max_chars)

    def session(self, vocab_size: int, device: torch.device | str = "cpu") -> ConstraintSession:
        parser = _StrictJsonParser(JsonSchemaParser(self.json_schema), self.max_number_chars, self.whitespace)
        return ConstraintSession(TokenEnforcer(self.data, parser), vocab_size, device)

    def describe(self) -> dict[str, Any]:
        return {
            "library": "lm-format-enforcer",
            "max_number_chars": self.max_number_chars,
            "whitespace": self.whitespace,
            "max_chars": self.max_chars,
        }


def allowed_mask(
    generated: Sequence[Sequence[int] | None],
    vocab_size: int,
    device: torch.device | str,
    allowed_ids: Callable[[Sequence[int]], Any],
) -> torch.Tensor:
    """``[rows, vocab]`` bool from each row's generated tokens: ``allowed_ids(tokens)`` for a live row, every
    token for a finished (``None``) row. The mask every decoding constraint hands the generation loop."""
    out = torch.zeros((len(generated), vocab_size), dtype=torch.bool)
    for r, ids in enumerate(generated):
        if ids is None:
            out[r] = True
        else:
            out[r, allowed_ids(ids)] = True
    return out.to(device)


class ConstraintSession:
    """One TokenEnforcer for a batch. Its states are keyed by generated-token prefixes, so rows that
    share a prefix share the work, and memory is freed with the session."""

    def __init__(self, enforcer: TokenEnforcer, vocab_size: int, device: torch.device | str) -> None:
        self.enforcer = enforcer
        self.vocab_size = vocab_size
        self.device = device
        self._index_cache: dict[int, tuple[Any, torch.Tensor]] = {}

    def allowed_ids(self, generated: Sequence[int]) -> torch.Tensor:
        """Token ids allowed after ``generated`` (this row's generated tokens, prompt excluded)."""
        token_list = self.enforcer.get_allowed_tokens(list(generated))
        key = id(token_list)
        hit = self._index_cache.get(key)
        if hit is None:
            allowed = token_list.allowed_tokens
            # np.fromiter is ~10x faster than torch.tensor on a list of ~50k Python ints (free text).
            ids = torch.from_numpy(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            ids = ids[ids < self.vocab_size]
            # Keep token_list alive with its tensor so the id() key cannot be reused by another object.
            hit = (token_list, ids)
            self._index_cache[key] = hit
        return hit[1]

    def mask(self, generated: Sequence[Sequence[int] | None]) -> torch.Tensor:
        """``[len(generated), vocab]`` bool; a ``None`` row (finished) allows everything."""
        return allowed_mask(generated, self.vocab_size, self.device, self.allowed_ids)


class JsonSchemaLogitsProcessor(LogitsProcessor):
    """A ``transformers`` LogitsProcessor for ``model.generate(..., logits_processor=[...])``.

    The first call fixes the prompt width (``input_ids.shape[1]``); the tokens after it are the generated
    ones. One processor serves one ``generate`` call.
    """

    def __init__(self, constraint: JsonConstraint) -> None:
        self.constraint = constraint
        self._session: ConstraintSession | None = None
        self._prompt_width = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._session is None:
            self._session = self.constraint.session(scores.shape[-1], scores.device)
            self._prompt_width = input_ids.shape[1]
        generated = input_ids[:, self._prompt_width :].tolist()
        allowed = self._session.mask(generated)
        return scores.masked_fill(~allowed, float("-inf"))
