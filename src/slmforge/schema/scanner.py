"""The one JSON scanner: where the first balanced top-level JSON object in a text ends.

Generation feeds it decoded pieces to stop a row as soon as its object closes; parsing uses it to cut the
object out of a finished output. Hand-written because it must run incrementally on partial text, which
``json.JSONDecoder.raw_decode`` cannot (it needs the whole object).
"""

from __future__ import annotations


class JsonEndScanner:
    """Finds where the first balanced top-level JSON object ends, fed one piece of text at a time.

    Text before the first ``{`` is skipped; braces inside strings (and escaped quotes) do not count.
    The one JSON-object rule: generation stops on it and :func:`slmforge.schema.parse_output` finds
    the object with it.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.in_str = False
        self.escaped = False
        self.consumed = 0  # characters fed so far
        self.end: int | None = None  # index just past the closing brace, once seen

    def feed(self, text: str) -> bool:
        """Consume ``text``; True once the object is closed (``self.end`` then says where)."""
        if self.end is not None:
            return True
        for i, ch in enumerate(text):
            if self.in_str:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_str = False
            elif self.depth == 0:
                if ch == "{":
                    self.depth = 1
            elif ch == '"':
                self.in_str = True
            elif ch == "{":
                self.depth += 1
            elif ch == "}":
                self.depth -= 1
                if self.depth == 0:
                    self.end = self.consumed + i + 1
                    self.consumed += len(text)
                    return True
        self.consumed += len(text)
        return False
