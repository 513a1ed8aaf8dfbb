"""Test doubles that run for real on loopback (never imported by the library's production path).

:mod:`.openai_double`: an OpenAI-compatible chat-completions server over a local model, with faults injected
on purpose (rate limits, outages, slowness, garbage replies), for API-baseline and client tests.
"""
