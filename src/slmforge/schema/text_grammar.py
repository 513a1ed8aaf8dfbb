"""Text constraints of a generation task as an output grammar (llguidance Lark), for constrained decoding.

:func:`text_grammar` turns :class:`~slmforge.metrics.generation.Constraints` (and one example's own
required phrases) into one Lark token that intersects regular expressions, so that every text the grammar
allows passes :func:`~slmforge.metrics.generation.check_constraints`::

    start: TEXT
    TEXT: /<words>/ & /(?s:.*(?:<A>(?s:.*)<B>|<B>(?s:.*)<A>).*)/ & /<the user's regex>/
          & ~/(?s:.*(?:<forbidden>|...).*)/

What each part expresses, against what the metric checks (the metric judges the stripped output):

- **words** (always): no leading or trailing whitespace (so stripping changes nothing), words of at most
  ``max_word_chars`` non-whitespace characters separated by at most ``max_space_chars`` whitespace
  characters, between ``min_words`` and ``max_words`` of them. Whitespace is exactly Python's
  ``str.isspace`` set, the one ``str.split`` counts words with.
- **required phrases**: each must occur. Up to three phrases that cannot overlap are one alternation over
  their orders (one component instead of one per phrase: far cheaper for the engine); a phrase contained
  in another is implied and dropped. Case-insensitive (``case_sensitive: false``), each character of the
  phrase's ``casefold()`` becomes the class of its plain case variants (``k`` -> ``[Kk]``): a text written
  with an exotic spelling the metric would also accept (the Kelvin sign, ``ß`` for ``ss``) is not
  produced, which is stricter, never looser.
- **forbidden phrases**: none may occur (a negation), with the same classes; case-insensitive, the
  characters that would also fold into a forbidden phrase (:func:`exotic_fold_chars`: ``ſ``, ``K``,
  ``ß``...) never appear in the output at all, which keeps the negation cheap and is never looser.
- **regex**: ``re.search`` semantics, translated (:func:`search_regex`): ``R`` becomes
  ``(?s:.*)(?:R)(?s:.*)``; a ``^``/``\\A`` at the start of a top-level branch drops the leading ``.*``, a
  ``$``/``\\Z`` at its end the trailing one (the output never ends in whitespace, so Python's "``$`` also
  matches before a final newline" changes nothing); leading inline flags ``i``, ``s``, ``u`` carry over.

What a grammar cannot express, and what happens then. Python regex features the engine (Rust syntax, no
backtracking) lacks or reads differently make the regex *not expressed*: anchors or ``\\b``/``\\B`` inside the
pattern, look-arounds, back-references, possessive quantifiers and atomic groups, the ``m``, ``x``, ``a``
and ``L`` flags, nested sets and set operators inside ``[...]``, escapes Rust does not know
(``\\N{...}``), ``(?#...)``. The grammar is then built without the regex (every other constraint still
holds), a warning is logged (once per pattern), and the grammar's summary records it under
``unexpressed`` (``{"regex": reason}``), so a compliance below 1.0 with ``constrained=true`` is explained.
Small differences remain documented rather than translated: ``\\w`` and ``(?i)`` inside the user's regex
follow Rust's Unicode tables, which differ from Python's on a few rare characters. Constraints that
contradict each other (a regex allowing fewer words than ``min_words``) leave nothing to generate: the
engine fails on the first step instead of producing a non-compliant text.

What a bound costs. ``max_word_chars`` with a word bound (``constraints.max_words``, else the ``max_words``
option) makes every output finite: ``max_bytes = words * max_word_chars * 4 + (words - 1) *
max_space_chars * 3`` UTF-8 bytes, so ``max_new_tokens`` of that size guarantees a finished, compliant
output even from an untrained model, at the price that a longer word (a URL, a long compound) or a longer
whitespace run cannot be written (a required phrase's own words always fit: the bound is raised to the
longest of them). The bound is a cap; a model that has learned the texts stops far earlier. Without
either bound the grammar is unbounded (``max_bytes`` None): decoding stops at the predictor's
``max_new_tokens``, and a model that has not met every constraint by then is cut off and fails them.

Engine cost. Intersections and negations are checked by llguidance lazily, and checking that a state can
still be completed explores what remains of the text; with a word-length bound (a counter per character)
next to phrases and a negation, that exceeds llguidance's default lexer fuel (1M to compile, 200k per
mask step), most of all on the step where the word budget forces the phrases in. Measured on the built-in
product descriptions (2 phrases, 2 forbidden phrases, the template regex, 20-70 words, SmolLM2's 49k
vocabulary): 20M for both compiles every row in ~0.02 s and keeps masks at ~10 ms, with a few slow steps
near the word budget. The grammar says what it needs in ``OutputGrammar.limits``
(:data:`LLGUIDANCE_LIMITS`, fields of ``llguidance.LLParserLimits``); a matcher built without them stops
with "fuel exhausted" or "too many expressions constructed".
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
from collections.abc import Sequence
from typing import Any

from slmforge.metrics.generation import Constraints
from slmforge.schema.grammar import OutputGrammar, lark_grammar

log = logging.getLogger(__name__)

# Python's whitespace (str.isspace, what str.split splits on): tab..CR, the file/group/record/unit
# separators, space, NEL, NBSP and the Unicode spaces.
WHITESPACE: str = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
MAX_WHITESPACE_BYTES = max(len(c.encode()) for c in WHITESPACE)  # 3 (U+3000)
MAX_CHAR_BYTES = 4
_ANY = "(?s:.*)"
# llguidance parser limits a text grammar needs (module docstring, "Engine cost").
LLGUIDANCE_LIMITS: dict[str, int] = {"initial_lexer_fuel": 20_000_000, "step_lexer_fuel": 20_000_000}


class UnsupportedRegex(ValueError):
    """A Python regex the grammar engine cannot express with the same meaning (the message says why)."""


# --------------------------------------------------------------------------------------------------
# Literals and classes


def _lit(ch: str) -> str:
    """One character as a regex atom: ASCII letters and digits as they are, every other ASCII character
    (metacharacters, ``/`` that would end the Lark token, controls) as ``\\x{..}``; non-ASCII printable
    characters as they are."""
    if ch.isascii():
        return ch if ch.isalnum() else f"\\x{{{ord(ch):X}}}"
    return ch if ch.isprintable() and not ch.isspace() else f"\\x{{{ord(ch):X}}}"


def _class(chars: Sequence[str], negate: bool = False) -> str:
    """A character class of ``chars`` (consecutive code points folded into ranges)."""
    cps = sorted({ord(c) for c in chars})
    parts, i = [], 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        lo, hi = _lit(chr(cps[i])), _lit(chr(cps[j]))
        parts.append(lo if i == j else f"{lo}-{hi}")
        i = j + 1
    return f"[{'^' if negate else ''}{''.join(parts)}]"


WS = _class(WHITESPACE)
NON_WS = _class(WHITESPACE, negate=True)


@functools.cache
def _fold_table() -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """(single-character fold -> every character folding to it, character -> its multi-character fold).
    One pass over all code points (~0.4 s, once per process)."""
    single: dict[str, list[str]] = {}
    multi: dict[str, str] = {}
    for cp in range(0x110000):
        c = chr(cp)
        f = c.casefold()
        if len(f) == 1:
            single.setdefault(f, []).append(c)
        else:
            multi[c] = f
    return {f: tuple(cs) for f, cs in single.items()}, multi


def _case_variants(f: str) -> list[str]:
    """The plain case variants of the single-character fold ``f``: ``f`` and its upper/lower/title case,
    where they are single characters folding back to ``f`` (``s`` -> ``s``, ``S``; not ``ſ``)."""
    return sorted({x for x in (f, f.upper(), f.lower(), f.title()) if len(x) == 1 and x.casefold() == f})


def phrase_regex(phrase: str, case_sensitive: bool) -> str:
    """A regex matching ``phrase``: literally, or (case-insensitive) each character of its ``casefold()``
    as the class of its plain case variants (``k`` -> ``[Kk]``; :func:`exotic_fold_chars` are the other
    characters the metric would also accept, which the text grammar keeps out of the output)."""
    if case_sensitive:
        return "".join(_lit(c) for c in phrase)
    out = []
    for f in phrase.casefold():
        chars = _case_variants(f)
        out.append(_lit(chars[0]) if len(chars) == 1 else _class(chars))
    return "".join(out)


def exotic_fold_chars(phrases: Sequence[str]) -> list[str]:
    """Characters that case-fold into (part of) one of ``phrases`` without being a plain case variant: the
    Kelvin sign and long s (``K``, ``ſ`` fold to ``k``, ``s``), and characters whose fold is several
    characters sharing one with a phrase (``ß`` -> ``ss``). Case-insensitive matching would have to treat
    them specially; the text grammar excludes them from the output instead (module docstring)."""
    single, multi = _fold_table()
    letters = set("".join(p.casefold() for p in phrases))
    out = {c for f in letters for c in single.get(f, ()) if c not in _case_variants(f)}
    out |= {c for c, f in multi.items() if letters & set(f)}
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# The user's regex: re.search semantics


_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")
_POSSESSIVE_AFTER = set("*+?}")


def _scan(pattern: str) -> list[str]:
    """Rewrite ``pattern`` atom by atom into Rust syntax and split it at top-level ``|``: each branch's
    text, with every unescaped ``^``/``$``/``\\A``/``\\Z`` (outside classes) left as a marker (``\\x00^``
    etc.) for :func:`search_regex` to place or reject. Raises :class:`UnsupportedRegex`."""
    branches: list[list[str]] = [[]]
    depth = 0
    i, n = 0, len(pattern)
    prev_quant = False  # the previous atom was a quantifier (a following "+" would be possessive)
    while i < n:
        ch = pattern[i]
        out = branches[-1]
        quant = False
        if ch == "\\":
            if i + 1 >= n:
                raise UnsupportedRegex("the pattern ends with a lone backslash")
            nxt = pattern[i + 1]
            if nxt in "AZ":
                out.append(f"\x00{nxt}")
            elif nxt in "bB":
                raise UnsupportedRegex(f"word boundary \\{nxt} (the grammar engine has no look-around)")
            elif (nxt.isdigit() and nxt != "0") or nxt == "g":
                raise UnsupportedRegex("back-references need backtracking, which the grammar engine lacks")
            elif nxt == "/":
                out.append(_lit("/"))
            else:
                out.append(pattern[i : i + 2])
            i += 2
        elif ch == "[":
            j, cls = _scan_class(pattern, i)
            out.append(cls)
            i = j
        elif ch == "(":
            if pattern.startswith("(?", i):
                rest = pattern[i + 2 : i + 4]
                if rest[:1] in ("=", "!") or rest in ("<=", "<!"):
                    raise UnsupportedRegex("look-ahead/look-behind (the grammar engine has no look-around)")
                if rest[:1] == ">":
                    raise UnsupportedRegex("atomic groups (?>...) need backtracking")
                if rest[:1] == "#":
                    raise UnsupportedRegex("inline comments (?#...)")
                if rest[:1] == "(":
                    raise UnsupportedRegex("conditional groups (?(...)...)")
                if pattern.startswith("(?P=", i):
                    raise UnsupportedRegex(
                        "back-references need backtracking, which the grammar engine lacks"
                    )
                m = re.match(r"\(\?([a-zA-Z-]+)[:)]", pattern[i:])
                if m and set(m.group(1)) - set("isu-"):
                    raise UnsupportedRegex(f"inline flags {m.group(1)!r} (only i, s and u carry over)")
            depth += 1
            out.append("(")
            i += 1
        elif ch == ")":
            depth -= 1
            out.append(")")
            i += 1
            if depth < 0:
                raise UnsupportedRegex("unbalanced parenthesis")
        elif ch == "|" and depth == 0:
            branches.append([])
            i += 1
        elif ch in "^$":
            out.append(f"\x00{ch}")
            i += 1
        elif ch == "{":
            m = re.match(r"\{(\d*)(,?)(\d*)\}", pattern[i:])
            if not m or not (m.group(1) or m.group(3)):
                # Python reads a "{" that starts no valid quantifier as a literal brace.
                out.append(_lit("{"))
                i += 1
            else:
                lo, comma, hi = m.groups()
                out.append(f"{{{lo or '0'}{comma}{hi}}}")
                i += m.end()
                quant = True
        elif ch in "*+?":
            if ch == "+" and prev_quant:
                raise UnsupportedRegex("possessive quantifiers (*+, ++, ?+, {m,n}+) need backtracking")
            out.append(ch)
            i += 1
            quant = ch != "?" or not prev_quant  # "*?" is a lazy quantifier: same language, no error
        elif ch in "/]}\n" or (ch.isascii() and not ch.isprintable()):
            # "/" would end the Lark token; a stray "]" or "}" is a literal in Python; controls as escapes.
            out.append(_lit(ch))
            i += 1
        else:
            out.append(ch)
            i += 1
        prev_quant = quant
    return ["".join(b) for b in branches]


def _scan_class(pattern: str, start: int) -> tuple[int, str]:
    """The class starting at ``pattern[start] == "["`` rewritten for Rust: ``]`` first and ``[`` inside are
    literals in Python (escaped here); Rust's set operators ``&&``, ``--``, ``~~`` read differently."""
    i = start + 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    while i < len(pattern):
        ch = pattern[i]
        if ch == "]" and not first:
            out.append("]")
            return i + 1, "".join(out)
        if ch == "\\":
            if i + 1 >= len(pattern):
                break
            nxt = pattern[i + 1]
            if nxt == "b":
                out.append(_lit("\b"))
            elif nxt == "/":
                out.append(_lit("/"))
            else:
                out.append(pattern[i : i + 2])
            i += 2
        elif pattern.startswith(("&&", "--", "~~"), i):
            raise UnsupportedRegex(
                f"{pattern[i : i + 2]!r} inside [...] is a set operator in the grammar engine"
            )
        elif ch in "[]/&~" or ch == "\n" or (ch.isascii() and not ch.isprintable()):
            out.append(_lit(ch))
            i += 1
        else:
            out.append(ch)
            i += 1
        first = False
    raise UnsupportedRegex("unterminated character class")


def search_regex(pattern: str) -> str:
    """``pattern`` (Python ``re`` syntax) as a regex matching exactly the texts in which ``re.search`` finds
    it (given a text that does not end in whitespace), in llguidance's Rust syntax, ready for a Lark token.

    Raises :class:`UnsupportedRegex` for what cannot be translated faithfully (module docstring)."""
    flags = ""
    m = _GLOBAL_FLAGS.match(pattern)
    if m:
        if set(m.group(1)) - set("isu"):
            raise UnsupportedRegex(f"global flags {m.group(1)!r} (only i, s and u carry over)")
        flags = "".join(sorted(set(m.group(1)) - {"u"}))
        pattern = pattern[m.end() :]
    branches = _scan(pattern)
    out = []
    for body in branches:
        start_anchored = body.startswith(("\x00^", "\x00A"))
        if start_anchored:
            body = body[2:]
        end_anchored = body.endswith(("\x00$", "\x00Z"))
        if end_anchored:
            body = body[:-2]
        if "\x00" in body:
            raise UnsupportedRegex(
                "an anchor (^, $, \\A, \\Z) that is not at the start or end of a top-level branch"
            )
        inner = f"(?{flags}:{body})" if flags else f"(?:{body})"
        out.append(("" if start_anchored else _ANY) + inner + ("" if end_anchored else _ANY))
    return out[0] if len(out) == 1 else "|".join(f"(?:{b})" for b in out)


@functools.lru_cache(maxsize=256)
def expressible_regex(pattern: str) -> tuple[str | None, str | None]:
    """(:func:`search_regex` of ``pattern``, None), or (None, why not) when it cannot be expressed (also when
    the grammar engine rejects the translation)."""
    from llguidance import LLMatcher

    try:
        rx = search_regex(pattern)
        is_error, messages = LLMatcher.validate_grammar_with_warnings(
            LLMatcher.grammar_from_lark(f"start: TEXT\nTEXT: /{rx}/\n")
        )
        if is_error:
            raise UnsupportedRegex(
                f"the grammar engine rejects it: {messages[0].splitlines()[0] if messages else '?'}"
            )
    except UnsupportedRegex as e:
        # Logged once per pattern (this is cached), not once per row's grammar.
        log.warning(
            "constraints.regex %r is not enforced by constrained decoding (%s); every other constraint is, "
            "and the metric still checks the regex",
            pattern,
            e,
        )
        return None, str(e)
    return rx, None


# --------------------------------------------------------------------------------------------------
# The grammar


def words_regex(
    min_words: int,
    max_words: int | None,
    max_word_chars: int | None,
    max_space_chars: int | None,
    exclude: Sequence[str] = (),
) -> str:
    """Texts without leading/trailing whitespace of ``min_words`` to ``max_words`` (None: any number)
    words, each at most ``max_word_chars`` characters (None: any), separated by at most
    ``max_space_chars`` whitespace characters (None: any); ``exclude``: characters no word may contain."""
    word = _class([*WHITESPACE, *exclude], negate=True) + (
        f"{{1,{max_word_chars}}}" if max_word_chars else "+"
    )
    space = WS + (f"{{1,{max_space_chars}}}" if max_space_chars else "+")
    if max_words == 0:
        return "(?:)"
    more_hi = "" if max_words is None else str(max_words - 1)
    if min_words >= 1:
        return f"{word}(?:{space}{word}){{{min_words - 1},{more_hi}}}"
    return f"(?:{word}(?:{space}{word}){{0,{more_hi}}})?"


def _overlap(a: str, b: str) -> bool:
    """Whether a suffix of ``a`` is a prefix of ``b`` (or the reverse): occurrences could share characters."""
    return any(a.endswith(b[:k]) or b.endswith(a[:k]) for k in range(1, min(len(a), len(b))))


def required_regexes(phrases: Sequence[str], case_sensitive: bool) -> list[str]:
    """Regexes whose intersection holds exactly the texts containing every phrase (as the metric reads
    them). Phrases another phrase contains are dropped (implied); up to three phrases that cannot overlap
    become one alternation over their orders (``.*A.*B.*|.*B.*A.*``: one component instead of several,
    far cheaper for the engine); otherwise one ``.*P.*`` per phrase."""
    key = (lambda p: p) if case_sensitive else (lambda p: p.casefold())
    kept = [p for p in phrases if not any(key(p) in key(q) and key(p) != key(q) for q in phrases)]
    kept = list({key(p): p for p in kept}.values())
    if not kept:
        return []
    pieces = [phrase_regex(p, case_sensitive) for p in kept]
    if len(kept) > 3 or any(_overlap(key(a), key(b)) for i, a in enumerate(kept) for b in kept[i + 1 :]):
        return [f"{_ANY}{piece}{_ANY}" for piece in pieces]
    orders = ["(?s:.*)".join(order) for order in itertools.permutations(pieces)]
    body = orders[0] if len(orders) == 1 else "(?:" + "|".join(orders) + ")"
    return [f"{_ANY}{body}{_ANY}"]


def text_grammar(
    constraints: Constraints,
    required_extra: Sequence[str] = (),
    *,
    max_words: int | None = None,
    max_word_chars: int | None = 32,
    max_space_chars: int | None = 2,
) -> OutputGrammar:
    """The output grammar of ``constraints`` plus one example's own ``required_extra`` phrases.

    max_words: the word bound when ``constraints.max_words`` is unset (None: no word bound);
    max_word_chars: the longest word (None: unbounded words); max_space_chars: the longest whitespace run
    (None: unbounded). Module docstring: what the bounds cost. The output is finite, and ``max_bytes`` set, when both a
    word bound and ``max_word_chars`` are. The summary lists which constraints the grammar ``expressed``
    and which not (``unexpressed``: name -> reason).
    """
    for name, bound in (("max_word_chars", max_word_chars), ("max_space_chars", max_space_chars)):
        if bound is not None and bound < 1:
            raise ValueError(f"{name}={bound}: it must be at least 1 (or null for no bound)")
    if max_words is not None and max_words < 0:
        raise ValueError(f"max_words={max_words}: it must be at least 0 (or null for no bound)")
    cs = constraints.case_sensitive
    required = [p for p in dict.fromkeys([*constraints.required_phrases, *required_extra]) if p]
    forbidden = [p for p in dict.fromkeys(constraints.forbidden_phrases) if p]
    lo = constraints.min_words or 0
    hi = constraints.max_words if constraints.max_words is not None else max_words
    if hi is not None:
        hi = max(hi, lo)
    word_chars = max_word_chars
    if word_chars is not None:  # a required phrase's words always fit
        word_chars = max([word_chars, *(len(w) for p in required for w in p.split())])
    # Case-insensitive forbidden phrases: characters folding into them other than plain case variants
    # never appear (cheaper and as sound as matching them; module docstring).
    exclude = exotic_fold_chars(forbidden) if forbidden and not cs else []

    parts = [words_regex(lo, hi, word_chars, max_space_chars, exclude)]
    expressed: list[str] = []
    unexpressed: dict[str, str] = {}
    if constraints.min_words is not None or constraints.max_words is not None:
        expressed.append("length")
    if required:
        parts += required_regexes(required, cs)
        expressed.append("required_phrases")
    if constraints.regex is not None:
        rx, why = expressible_regex(constraints.regex)
        if rx is None:
            unexpressed["regex"] = str(why)
        else:
            parts.append(rx)
            expressed.append("regex")
    token = " & ".join(f"/{p}/" for p in parts)
    if forbidden:
        token += f" & ~/{_ANY}(?:{'|'.join(phrase_regex(p, cs) for p in forbidden)}){_ANY}/"
        expressed.append("forbidden_phrases")

    max_bytes = None
    if hi is not None and word_chars is not None and max_space_chars is not None:
        max_bytes = hi * word_chars * MAX_CHAR_BYTES + max(hi - 1, 0) * max_space_chars * MAX_WHITESPACE_BYTES
    summary: dict[str, Any] = {
        "kind": "text",
        "expressed": expressed,
        "max_words": hi,
        "max_word_chars": word_chars,
        "max_space_chars": max_space_chars,
    }
    if unexpressed:
        summary["unexpressed"] = unexpressed
    return lark_grammar(f"start: TEXT\nTEXT: {token}\n", max_bytes, limits=dict(LLGUIDANCE_LIMITS), **summary)
