"""The one exception routing raises for bad inputs, so callers (the CLI) can show its message as is."""

from __future__ import annotations


class RoutingError(ValueError):
    """Routing inputs that cannot give a meaningful answer; the message says what to change."""
