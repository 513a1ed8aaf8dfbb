"""Serving local models behind an OpenAI-compatible HTTP API (see :mod:`slmforge.serving.openai_server`)."""

from slmforge.serving.openai_server import ChatModel, Faults, ServerHandle, start_server

__all__ = ["ChatModel", "Faults", "ServerHandle", "start_server"]
