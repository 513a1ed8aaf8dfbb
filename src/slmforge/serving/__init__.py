"""Serving local models behind an OpenAI-compatible HTTP API.

Until the batched, versioned server of the serving issue lands, ``slmforge-serve`` runs the loopback server
of :mod:`slmforge.testing.openai_double` without faults (a test double, one request at a time).
"""

from slmforge.testing.openai_double import ChatModel, ServerHandle, start_server

__all__ = ["ChatModel", "ServerHandle", "start_server"]
