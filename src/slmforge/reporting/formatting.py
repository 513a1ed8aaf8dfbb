"""Number formatting shared by the recommendation sentence, the report tables and the plots.

Money spans six orders of magnitude here ($0.0007 per 1k requests self-hosted vs $39,500 a month on an
API), so fixed decimals would print either "$0.00" or noise; these keep two significant figures for small
amounts and whole dollars for large ones.
"""

from __future__ import annotations

import math
from typing import Any


def _is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt_usd(x: Any) -> str:
    """0.000694 -> "$0.00069", 0.087 -> "$0.087", 6.94 -> "$6.94", 40.0 -> "$40", 39500 -> "$39,500"."""
    if _is_missing(x):
        return "n/a"
    x = float(x)
    if x == 0:
        return "$0"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        s = f"{x:,.2f}"
        return f"${s[:-3] if s.endswith('.00') else s}"
    return f"${x:.2g}"


def fmt_ms(x: Any) -> str:
    """Latency: 38.2 -> "38 ms", 3.21 -> "3.2 ms", 1234 -> "1.23 s"."""
    if _is_missing(x):
        return "n/a"
    x = float(x)
    if x >= 1000:
        return f"{x / 1000:.3g} s"
    if x >= 10:
        return f"{x:.0f} ms"
    return f"{x:.2g} ms"


def fmt_count(n: Any) -> str:
    """Request volumes: 10_000_000 -> "10M", 1_500_000 -> "1.5M", 50_000 -> "50k"."""
    if _is_missing(n):
        return "n/a"
    n = float(n)
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def fmt_num(x: Any, digits: int = 3) -> str:
    """Metrics and other plain numbers with ``digits`` significant figures; "n/a" for missing."""
    if _is_missing(x):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, int):
        return f"{x:,}"
    return f"{float(x):.{digits}g}"


def fmt_metric(x: Any) -> str:
    """Scores in [0, 1] with 2-3 decimals (0.8 -> "0.80", 0.905 -> "0.905"); others as :func:`fmt_num`."""
    if _is_missing(x) or isinstance(x, bool) or not 0.0 <= abs(float(x)) <= 1.0:
        return fmt_num(x)
    s = f"{float(x):.3f}"
    return s[:-1] if s.endswith("0") else s


def fmt_pct(x: Any) -> str:
    """Shares such as coverage: 1.0 -> "100%", 0.625 -> "62.5%", 0.0 -> "0%"; "n/a" for missing."""
    if _is_missing(x):
        return "n/a"
    return f"{100 * float(x):.3g}%"


def fmt_duration(seconds: Any) -> str:
    """Training time: 42 -> "42 s", 600 -> "10 min", 5400 -> "1.5 h"."""
    if _is_missing(seconds):
        return ""
    s = float(seconds)
    if s >= 3600:
        return f"{s / 3600:.2g} h"
    if s >= 60:
        return f"{s / 60:.2g} min"
    return f"{s:.0f} s"
