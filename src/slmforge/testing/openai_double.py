"""A small OpenAI-compatible chat-completions server for a local Hugging Face causal LM.

Why it exists: it lets a fine-tuned small model be called exactly like a hosted LLM (same client, same
:class:`~slmforge.prediction.api.APIPredictor`), and it gives the API predictor's tests a *real* HTTP server
on loopback, with faults injected on purpose (rate limits, outages, slowness, garbage replies).

Endpoints:
- ``POST /v1/chat/completions``: messages -> the tokenizer's chat template (``render_prompt``, the same
  rendering training and local prediction use) -> ``generate`` (greedy at temperature 0) with ``max_tokens``
  and ``stop`` strings -> an OpenAI ``chat.completion`` object with ``usage`` and, when asked, per-token
  ``logprobs``.
- ``response_format`` is checked and honoured like OpenAI's: ``{"type": "text"}`` or none: free text;
  ``{"type": "json_object"}``: decoding is constrained to a JSON object (kept small so that a random
  model finishes: at most 4 keys of ``[a-z_]{1,12}`` with strings of up to 16 characters);
  ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``: ``name`` must match
  ``[A-Za-z0-9_-]{1,64}``, the schema's root must be an object and, with ``strict: true``, every object
  must list all its properties in ``required`` and set ``additionalProperties: false``, with only the
  keywords strict mode supports (else 400, worded like OpenAI's "Invalid schema for response_format"
  errors); the reply is then decoded under the schema with llguidance
  (:mod:`slmforge.prediction.constrained`), free strings cut at 16 characters and lists at 2 items
  (:func:`~slmforge.schema.grammar.bounded_json_schema`) so that a random model finishes, and is valid
  under the schema whenever ``max_tokens`` leaves room for it (``finish_reason: "length"`` otherwise, as
  with OpenAI).
- ``GET /v1/models``, ``GET /health``.
- ``ServerHandle.request_bodies()`` (in-process): the JSON bodies of the last 256 chat-completion
  requests, so tests can assert what a client sent.
- ``GET /stats``: chat-completion requests received, responses by status, and the most requests that were
  in flight at once (tests use it to count retries and check concurrency limits).

One model, one lock: generation calls are serialised (a second forward pass in parallel would only compete
for the same cores / GPU), while the HTTP side is threaded so that injected delays overlap.

Token accounting follows vLLM: ``completion_tokens`` and ``logprobs`` cover every generated token including
the one that ended generation (EOS, or the token completing a stop string), while the returned text excludes
EOS and the stop string. ``exp(sum(logprobs))`` is therefore p(answer and its end), the quantity label
scoring computes for local models.

Fault injection (constructor arguments and ``slmforge-serve`` options), counted over chat-completion
requests in arrival order: the first ``fail_first_n`` get ``fail_status`` (with ``Retry-After:
retry_after_s``), the next ``malformed_first_n`` get a 200 whose body is not an OpenAI completion, and every
request first waits ``delay_ms``. Malformed replies alternate between broken JSON and valid JSON of the wrong
shape (the openai client surfaces these differently). ``unsupported_response_formats`` (e.g.
``["json_schema"]``) makes the server answer 400 to those ``response_format`` types, worded like OpenAI's
"not supported with this model", as an endpoint without structured outputs does.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import torch

from slmforge.prediction.api import STRICT_KEYWORDS
from slmforge.prompting import render_prompt

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024 * 1024
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# Under a json_schema response format, free strings and lists are cut here so that a random model finishes.
JSON_MAX_STRING_CHARS = 16
JSON_MAX_LIST_ITEMS = 2
# What the double allows under {"type": "json_object"}: any small JSON object (a random model finishes it).
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "patternProperties": {"^[a-z_]{1,12}$": {"type": "string", "maxLength": 16}},
    "additionalProperties": False,
    "maxProperties": 4,
}
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_MALFORMED = (
    b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"message": {"content": "trunc',
    b'{"id": "chatcmpl-odd", "object": "chat.completion", "choices": "not a list", "usage": null}',
)


@dataclass
class Faults:
    """Deliberate misbehaviour, for testing clients. All zero = a well-behaved server."""

    fail_first_n: int = 0
    fail_status: int = 429
    retry_after_s: float = 0.0
    delay_ms: float = 0.0
    malformed_first_n: int = 0
    unsupported_response_formats: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fail_first_n < 0 or self.malformed_first_n < 0 or self.delay_ms < 0:
            raise ValueError("fail_first_n, malformed_first_n and delay_ms must be >= 0")
        if not 400 <= self.fail_status <= 599:
            raise ValueError(f"fail_status={self.fail_status} must be an HTTP error status (400-599)")
        self.unsupported_response_formats = [str(t) for t in self.unsupported_response_formats or []]
        unknown = set(self.unsupported_response_formats) - set(RESPONSE_FORMATS)
        if unknown:
            raise ValueError(
                f"unsupported_response_formats: unknown type(s) {sorted(unknown)}; known: {RESPONSE_FORMATS}"
            )


class RequestError(Exception):
    """A client error answered with ``status`` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.err_type = err_type


class ChatModel:
    """The model side: chat messages in, an OpenAI completion dict out. No HTTP here (testable alone)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, model_name: str = "local") -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        self._lock = threading.Lock()

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        # Same rendering and tokenisation as training/label scoring: a served adapter sees its training prompt.
        return self.tokenizer(render_prompt(self.tokenizer, messages), add_special_tokens=False)["input_ids"]

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        messages = _validate_messages(body.get("messages"))
        # OpenAI's default is "up to the context limit"; a small local model left unbounded rambles for
        # seconds, so an absent max_tokens means 16 (the legacy completions default).
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or 16
        if not isinstance(max_tokens, int) or max_tokens < 1:
            raise RequestError(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
        if body.get("n", 1) != 1:
            raise RequestError(400, "only n=1 is supported")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        if not all(isinstance(s, str) and s for s in stop):
            raise RequestError(400, "stop must be a non-empty string or a list of them")
        # Unlike OpenAI (default 1.0) an absent temperature means greedy: evaluations should be repeatable.
        try:
            temperature = float(body.get("temperature") or 0.0)
            top_p = float(body.get("top_p") or 1.0)
        except (TypeError, ValueError) as e:
            raise RequestError(400, f"temperature and top_p must be numbers ({e})") from e
        if temperature < 0 or not 0 < top_p <= 1:
            raise RequestError(400, f"need temperature >= 0 and 0 < top_p <= 1, got {temperature}, {top_p}")
        want_logprobs = bool(body.get("logprobs"))
        processors = self.response_format_processors(body.get("response_format"))

        ids = self.prompt_ids(messages)
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context and len(ids) + max_tokens > context:
            raise RequestError(
                400,
                f"the prompt has {len(ids)} tokens; with max_tokens={max_tokens} that exceeds the model's "
                f"context of {context} tokens. Shorten the prompt (fewer shots) or lower max_tokens",
            )
        device = next(self.model.parameters()).device
        input_ids = torch.tensor([ids], device=device)
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "output_logits": True,
            "return_dict_in_generate": True,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if temperature > 0:
            gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=0)  # top_k=0: OpenAI has none
        if stop:
            gen_kwargs.update(stop_strings=stop, tokenizer=self.tokenizer)
        if processors:
            gen_kwargs["logits_processor"] = processors
        with self._lock, torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **gen_kwargs
            )
        new_ids = out.sequences[0, len(ids) :].tolist()
        # Raw logits (before sampling processors): the model's own distribution, like OpenAI's logprobs.
        logits = out.logits if getattr(out, "logits", None) is not None else out.scores
        n_gen = len(logits)
        new_ids = new_ids[:n_gen]  # anything beyond the scored steps would be padding
        token_logprobs = [
            float(torch.log_softmax(step[0].float(), dim=-1)[tok].item())
            for step, tok in zip(logits, new_ids, strict=True)
        ]

        eos_ids = _eos_ids(self.model, self.tokenizer)
        ended_on_eos = bool(new_ids) and new_ids[-1] in eos_ids
        text_ids = new_ids[:-1] if ended_on_eos else new_ids
        text = self.tokenizer.decode(text_ids, skip_special_tokens=False)
        finish = "stop" if ended_on_eos else "length"
        cut = [i for i in (text.find(s) for s in stop) if i >= 0]
        if cut:
            text, finish = text[: min(cut)], "stop"

        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
        if want_logprobs:
            choice["logprobs"] = {
                "content": [
                    {
                        "token": piece,
                        "logprob": lp,
                        "bytes": list(piece.encode("utf-8")),
                        "top_logprobs": [],
                    }
                    for piece, lp in zip(
                        (self.tokenizer.decode([t]) for t in new_ids), token_logprobs, strict=True
                    )
                ]
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": len(new_ids),
                "total_tokens": len(ids) + len(new_ids),
            },
        }

    def response_format_processors(self, response_format: Any) -> list[Any]:
        """Logits processors enforcing ``response_format`` (module docstring); 400 for a malformed one."""
        if response_format is None:
            return []
        if not isinstance(response_format, dict) or response_format.get("type") not in RESPONSE_FORMATS:
            raise RequestError(
                400,
                f"Invalid value for 'response_format': expected an object with type one of {list(RESPONSE_FORMATS)}",
            )
        kind = response_format["type"]
        if kind == "text":
            return []
        from slmforge.prediction.constrained import GrammarConstraint, GrammarLogitsProcessor
        from slmforge.schema.grammar import bounded_json_schema, json_schema_grammar

        if kind == "json_object":
            js = JSON_OBJECT_SCHEMA
        else:
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict):
                raise RequestError(400, "Missing required parameter: 'response_format.json_schema'.")
            name = spec.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise RequestError(
                    400,
                    f"Invalid 'response_format.json_schema.name': {name!r}. Expected a string of letters, "
                    f"digits, underscores and dashes, at most 64 characters.",
                )
            schema = spec.get("schema")
            problems = strict_schema_problems(schema) if spec.get("strict") else _root_problems(schema)
            if problems:
                raise RequestError(400, f"Invalid schema for response_format '{name}': {problems[0]}")
            js = bounded_json_schema(
                schema, max_string_chars=JSON_MAX_STRING_CHARS, max_list_items=JSON_MAX_LIST_ITEMS
            )
        grammar = json_schema_grammar(js)
        return [GrammarLogitsProcessor(GrammarConstraint.static(self.tokenizer, grammar))]


def _root_problems(schema: Any) -> list[str]:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return ["schema must be a JSON Schema of 'type: \"object\"'."]
    return []


def strict_schema_problems(schema: Any) -> list[str]:
    """What OpenAI's strict mode would reject in ``schema``, worded like its 400 messages (empty: fine)."""
    problems = _root_problems(schema)
    if problems:
        return problems

    def walk(node: Any, context: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        where = f"In context={context}, "
        unknown = sorted(set(node) - STRICT_KEYWORDS)
        if unknown:
            problems.append(f"{where}'{unknown[0]}' is not permitted.")
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties", {})
            missing = [k for k in props if k not in (node.get("required") or [])]
            if missing:
                problems.append(
                    f"{where}'required' is required to be supplied and to be an array including every key in "
                    f"properties. Missing '{missing[0]}'."
                )
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}'additionalProperties' is required to be supplied and to be false.")
            for k, sub in props.items():
                walk(sub, (*context, "properties", k))
        if isinstance(node.get("items"), dict):
            walk(node["items"], (*context, "items"))
        for i, option in enumerate(node.get("anyOf", ())):
            walk(option, (*context, "anyOf", str(i)))

    walk(schema, ())
    return problems


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


def _validate_messages(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in {"system", "user", "assistant", "developer"}:
            raise RequestError(400, f"messages[{i}] needs a role of system/user/assistant")
        content = m.get("content")
        if isinstance(content, list):  # the content-parts form: keep the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise RequestError(400, f"messages[{i}].content must be a string")
        role = "system" if m["role"] == "developer" else m["role"]
        out.append({"role": role, "content": content})
    return out


class _Stats:
    """Thread-safe request counters (chat completions only, so health/stats polling does not skew them)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: collections.deque[dict[str, Any]] = collections.deque(maxlen=256)

    def enter(self) -> int:
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.requests

    def leave(self, status: int) -> None:
        with self._lock:
            self.in_flight -= 1
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "by_status": dict(self.by_status),
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
            }


class _Server(ThreadingHTTPServer):
    """One thread per connection, tracked so that ``close_connections`` can end them all.

    Why track: with keep-alive, a handler thread waits on its idle connection for as long as the client
    keeps it open. Left running past interpreter exit, threads that have run torch code can abort the
    process ("terminate called without an active exception"), so stopping the server hangs up on every
    connection and joins the threads.
    """

    daemon_threads = True  # a stuck handler must never keep the process alive
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], chat: ChatModel, faults: Faults, api_key: str | None) -> None:
        super().__init__(addr, _Handler)
        self.chat = chat
        self.faults = faults
        self.api_key = api_key
        self.stats = _Stats()
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        t = threading.Thread(target=self._serve_connection, args=(request, client_address), daemon=True)
        with self._conns_lock:
            self._conns[t] = request
        t.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)

    def close_connections(self, timeout_s: float = 30.0) -> None:
        """Hang up on every client and wait (up to ``timeout_s``) for running generations to finish."""
        with self._conns_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for t, _ in conns:
            t.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client (httpx) expects

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    # ---- plumbing -------------------------------------------------------------------------------------
    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        # A client that timed out has hung up; there is nobody left to tell, so a broken pipe is not an error.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

    def _error(self, status: int, message: str, err_type: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": err_type, "code": status}}, headers)

    # ---- routes ---------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/stats":
            self._send(200, self.server.stats.snapshot())
        elif path == "/v1/models":
            name = self.server.chat.model_name
            self._send(
                200, {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "slmforge"}]}
            )
        else:
            self._error(404, f"no route GET {path}", "not_found_error")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path != "/v1/chat/completions":
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(min(length, MAX_BODY_BYTES))  # drain, so the keep-alive connection stays usable
            self._error(404, f"no route POST {path}", "not_found_error")
            return
        stats = self.server.stats
        n = stats.enter()
        status = 500
        try:
            status = self._chat_completion(n)
        except Exception as e:  # never let one request take the server down
            log.exception("chat completion failed")
            status = 500
            self._error(500, f"{type(e).__name__}: {e}", "server_error")
        finally:
            stats.leave(status)

    def _chat_completion(self, n: int) -> int:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._error(413, "request body too large", "invalid_request_error")
            self.close_connection = True
            return 413
        raw = self.rfile.read(length)
        faults = self.server.faults
        if faults.delay_ms:
            time.sleep(faults.delay_ms / 1000.0)
        if n <= faults.fail_first_n:
            retry = faults.retry_after_s
            headers = {"Retry-After": f"{retry:g}", "retry-after-ms": str(int(retry * 1000))}
            self._error(
                faults.fail_status, f"injected fault {n}/{faults.fail_first_n}", "fault_injected", headers
            )
            return faults.fail_status
        k = n - faults.fail_first_n
        if k <= faults.malformed_first_n:
            # Alternate the two ways a reply goes wrong: broken JSON, and valid JSON of the wrong shape.
            body = _MALFORMED[(k - 1) % len(_MALFORMED)]
            self._send(200, body)
            return 200
        if self.server.api_key and self.headers.get("Authorization") != f"Bearer {self.server.api_key}":
            self._error(401, "invalid API key", "authentication_error")
            return 401
        try:
            body = json.loads(raw or b"null")
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            self.server.stats.bodies.append(body)
            rf = body.get("response_format")
            if isinstance(rf, dict) and rf.get("type") in faults.unsupported_response_formats:
                raise RequestError(
                    400,
                    f"Invalid parameter: 'response_format' of type '{rf['type']}' is not supported with this model.",
                )
            model = body.get("model")
            if model not in (None, self.server.chat.model_name):
                # Like vLLM: a wrong model name is a config mistake worth failing loudly on.
                raise RequestError(
                    404,
                    f"model '{model}' is not served here; this server serves '{self.server.chat.model_name}'",
                    "not_found_error",
                )
            result = self.server.chat.complete(body)
        except json.JSONDecodeError as e:
            self._error(400, f"request body is not JSON: {e}", "invalid_request_error")
            return 400
        except RequestError as e:
            self._error(e.status, str(e), e.err_type)
            return e.status
        self._send(200, result)
        return 200


class ServerHandle:
    """A running server. ``url`` is the OpenAI ``base_url`` (ends in ``/v1``); use as a context manager."""

    def __init__(self, server: _Server, thread: threading.Thread | None) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host: str = str(host)
        self.port: int = int(port)
        self.root = f"http://{self.host}:{self.port}"
        self.url = f"{self.root}/v1"

    @property
    def faults(self) -> Faults:
        return self._server.faults

    def request_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the last 256 chat-completion requests that parsed, in arrival order (tests
        assert what a client sent)."""
        return list(self._server.stats.bodies)

    def stats(self) -> dict[str, Any]:
        """The same numbers as ``GET /stats``, read in-process."""
        return self._server.stats.snapshot()

    def serve_forever(self) -> None:
        """Block serving requests (the CLI); Ctrl-C returns."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.close_connections(timeout_s=5.0)
            self._server.server_close()

    def stop(self) -> None:
        """Stop accepting, hang up on open connections, wait for requests still generating, close."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.close_connections()
        self._server.server_close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    model: torch.nn.Module,
    tokenizer: Any,
    host: str = "127.0.0.1",
    port: int = 0,
    model_name: str = "local",
    api_key: str | None = None,
    background: bool = True,
    **faults: Any,
) -> ServerHandle:
    """Serve ``model`` on ``host:port`` (``port=0``: any free port; read ``handle.url``).

    ``api_key``: when set, requests must send ``Authorization: Bearer <api_key>``.
    ``background``: serve from a daemon thread (tests, notebooks); ``False`` leaves serving to
    ``handle.serve_forever()``. ``faults``: the fields of :class:`Faults`.
    """
    unknown = set(faults) - set(Faults.__dataclass_fields__)
    if unknown:
        raise TypeError(
            f"unknown fault option(s) {sorted(unknown)}; known: {sorted(Faults.__dataclass_fields__)}"
        )
    chat = ChatModel(model, tokenizer, model_name=model_name)
    server = _Server((host, port), chat, Faults(**faults), api_key)
    thread = None
    if background:
        thread = threading.Thread(target=server.serve_forever, name=f"openai-server-{port}", daemon=True)
        thread.start()
    return ServerHandle(server, thread)
