"""Routing's user error, defined with every other one in :mod:`slmforge.errors`."""

from slmforge.errors import RoutingError

__all__ = ["RoutingError"]
