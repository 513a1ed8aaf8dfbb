"""Value normalisation: semantically equal values ("1,234.50" and 1234.5, "March 14, 2024" and
"2024-03-14") map to one representation so metrics compare meaning rather than spelling.

Lenient on purpose: it is applied to gold data too, which comes from datasets in whatever format they were
written. Day-first dates by default; partial dates are refused.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slmforge.schema.spec import FieldSpec


@dataclass
class Normalization:
    """How values are made comparable before scoring.

    ``case``: casefold strings. ``whitespace``: collapse whitespace runs and strip. ``numbers``: read
    number fields ("1,234.50", "$12.0", "12", 12) as floats rounded to 2 decimals. ``dates``: read date
    fields in common formats as ISO dates; ``dayfirst`` decides ambiguous numeric dates (03/04/2024 is
    3 April when True), falling back to the other order when the first is impossible (03/14/2024).
    """

    case: bool = True
    whitespace: bool = True
    numbers: bool = True
    dates: bool = True
    dayfirst: bool = True


_WS_RE = re.compile(r"\s+")


def _normalize_text(s: str, norm: Normalization) -> str:
    if norm.whitespace:
        s = _WS_RE.sub(" ", s).strip()
    if norm.case:
        s = s.casefold()
    return s


def _is_empty(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, list) and not value)
    )


def normalize_value(value: Any, spec: FieldSpec, norm: Normalization) -> Any:
    """Map ``value`` of field ``spec`` to a comparable form; accepts any type (gold data is messy).

    Empty values (None, blank strings) become None; list fields become a sorted list of normalised,
    non-empty items (possibly empty), to be compared as multisets. A number or date that cannot be
    read is kept as a normalised string, so it still equals an identical spelling.

    Objects become ``{sub-field: normalised value}`` in schema order (None when every sub-field is empty,
    or the normalised text of a value that is not an object). An item of a list of objects is that dict
    frozen into a hashable tuple of ``(name, value)`` pairs (nested lists as sorted tuples), so two items
    are equal exactly when all their sub-fields are, and a list of them compares as a multiset.
    """
    if spec.type == "list":
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else [value]
        item = spec.item_spec
        if item.type == "string":
            out = [_normalize_text(str(v), norm) for v in items if not _is_empty(v)]
            return sorted(v for v in out if v)
        normalised = (normalize_value(v, item, norm) for v in items if not _is_blank(v))
        return _sorted([_freeze(v) for v in normalised if v is not None])
    if spec.type == "object":
        if _is_blank(value):
            return None
        if not isinstance(value, Mapping):
            return _normalize_text(str(value), norm) or None
        sub = {f.name: normalize_value(value.get(f.name), f, norm) for f in spec.fields or []}
        return sub if any(v not in (None, []) for v in sub.values()) else None
    if _is_empty(value):
        return None
    if spec.type == "number" and norm.numbers:
        num = parse_number(value)
        if num is not None:
            return round(num, 2)
    if spec.type == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value  # numbers off: compare the JSON numbers as they are (12 == 12.0)
    if spec.type == "date" and norm.dates:
        if isinstance(value, _dt.datetime):
            return value.date().isoformat()
        if isinstance(value, _dt.date):
            return value.isoformat()
        d = parse_date(str(value), dayfirst=norm.dayfirst)
        if d is not None:
            return d.isoformat()
    s = _normalize_text(value if isinstance(value, str) else str(value), norm)
    return s or None


def _is_blank(value: Any) -> bool:
    return _is_empty(value) or (isinstance(value, Mapping) and not value)


def _freeze(value: Any) -> Any:
    """A hashable form of a normalised value: dicts -> tuples of (key, value) pairs, lists -> tuples."""
    if isinstance(value, dict):
        return tuple((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _sorted(values: list[Any]) -> list[Any]:
    """Sorted when the values are comparable (one type), else by type and spelling: any fixed order will do."""
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=lambda v: (type(v).__name__, repr(v)))


# Numbers ------------------------------------------------------------------------------------------

_CURRENCY_SYMBOLS = "$€£¥₹₩₽¢"
_NUM_WRAPPER_RE = re.compile(r"^([A-Za-z]{1,3}\.?)?(.*?)([A-Za-z]{1,3}\.?)?$")
_US_THOUSANDS_RE = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_EU_THOUSANDS_RE = re.compile(r"^\d{1,3}(\.\d{3})+,\d+$|^\d{1,3}(\.\d{3}){2,}$")
_DECIMAL_COMMA_RE = re.compile(r"^\d+,\d{1,2}$")
_PLAIN_RE = re.compile(r"^(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_number(value: Any) -> float | None:
    """Read a number written by a person: ``12``, ``"1,234.50"``, ``"$12.0"``, ``"USD 1 234,50"``, ``"(5)"``.

    Thousands separators: ``1,234.5`` (comma) and ``1.234,5`` / ``1.234.567`` (dot) are recognised;
    ``12,50`` (one comma, 1-2 decimals) is a decimal comma; a single dot group (``1.234``) is a decimal
    point. Parentheses mean negative (accounting). Returns None for booleans and anything unreadable.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if f == f and abs(f) != float("inf") else None
    s = str(value).strip()
    if not s:
        return None
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1].strip()
    for ch in _CURRENCY_SYMBOLS + "'\u00a0\u202f ":
        s = s.replace(ch, "")
    m = _NUM_WRAPPER_RE.match(s)  # currency codes / units of up to 3 letters around the number
    s = m.group(2) if m else s
    # A sign may sit before or after the (already removed) currency symbol: "-$12", "$-12".
    if s and s[0] in "+-":
        negative ^= s[0] == "-"
        s = s[1:]
    if _US_THOUSANDS_RE.match(s):
        s = s.replace(",", "")
    elif _EU_THOUSANDS_RE.match(s):
        s = s.replace(".", "").replace(",", ".")
    elif _DECIMAL_COMMA_RE.match(s):
        s = s.replace(",", ".")
    if not _PLAIN_RE.match(s):
        return None
    num = float(s)
    return -num if negative else num


# Dates --------------------------------------------------------------------------------------------

_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_IGNORED_WORDS = {
    "monday", "mon", "tuesday", "tue", "tues", "wednesday", "wed", "thursday", "thu", "thur", "thurs",
    "friday", "fri", "saturday", "sat", "sunday", "sun", "of", "the",
}  # fmt: skip
_ISO_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$")
_COMPACT_ISO_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_NUMERIC_RE = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})$")
_ORDINAL_RE = re.compile(r"(\d+)(st|nd|rd|th)\b")


def _year(y: str) -> int:
    # Same pivot as strptime's %y: 00-68 -> 2000s, 69-99 -> 1900s.
    n = int(y)
    if len(y) <= 2:
        return 2000 + n if n < 69 else 1900 + n
    return n


def _mkdate(y: int, m: int, d: int) -> _dt.date | None:
    try:
        return _dt.date(y, m, d)
    except ValueError:
        return None


def parse_date(text: str, dayfirst: bool = True) -> _dt.date | None:
    """Read a date in a common format; None when it is not one.

    Accepts ISO (``2024-03-14``, ``2024/03/14``, ``20240314``, ISO datetimes), numeric day/month orders
    (``14.03.2024``, ``03/14/2024``, ``25/12/18``) and month names (``March 14, 2024``, ``14 Mar 2024``,
    ``Thu, 14th of March 2024``). Partial dates ("March 2024") are rejected rather than guessed.
    """
    s = text.strip()
    m = _ISO_RE.match(s) or _COMPACT_ISO_RE.match(s)
    if m:
        return _mkdate(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    m = _NUMERIC_RE.match(s)
    if m:
        a, b, y = int(m.group(1)), int(m.group(2)), _year(m.group(3))
        orders = [(b, a), (a, b)] if dayfirst else [(a, b), (b, a)]  # (month, day)
        for month, day in orders:
            d = _mkdate(y, month, day)
            if d is not None:
                return d
        return None
    tokens = [t for t in re.split(r"[\s,./-]+", _ORDINAL_RE.sub(r"\1", s.casefold())) if t]
    tokens = [t for t in tokens if t not in _IGNORED_WORDS]
    months = [t for t in tokens if t in _MONTHS]
    numbers = [t for t in tokens if t.isdigit()]
    if len(tokens) != 3 or len(months) != 1 or len(numbers) != 2:
        return None
    month = _MONTHS[months[0]]
    long_years = [t for t in numbers if len(t) == 4]
    if len(long_years) == 1:
        year_tok = long_years[0]
        day_tok = numbers[0] if numbers[1] == year_tok else numbers[1]
    else:
        day_tok, year_tok = numbers  # "14 Mar 24" / "Mar 14 24": the day comes first
    if len(day_tok) > 2:
        return None
    return _mkdate(_year(year_tok), month, int(day_tok))
