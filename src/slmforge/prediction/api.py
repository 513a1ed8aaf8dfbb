"""Prompted large LLMs (or any model behind an OpenAI-compatible endpoint) as a :class:`Predictor`.

Each example becomes ``task.messages(example, shots)``, one chat-completion request, and
``task.parse(reply)``; this is the "generate then parse" baseline fine-tuned small models are compared with.
The same class calls OpenAI, vLLM, llama.cpp's server, a LiteLLM gateway or ``slmforge-serve``.

Behaviour that matters for an evaluation:

- **Order and isolation.** ``predict`` returns one :class:`Prediction` per example, in input order. A request
  that still fails after retries, or a reply that is not a chat completion, becomes
  ``Prediction(pred=None, confidence=None, raw_output=None, details={"error": ...})`` (scored wrong) instead
  of aborting the whole evaluation.
- **Retries** (done here, not by the openai client, so they are counted and bounded): on 429, 5xx, timeouts
  and connection errors, up to ``max_retries`` more attempts, waiting ``Retry-After`` when the server sends
  one, otherwise exponential backoff with jitter. Other 4xx (bad request, auth, unknown model) are
  configuration mistakes; repeating them only costs time, so they are not retried. Malformed replies are
  not retried either: a server that returned one usually returns it again.
- **Concurrency**: at most ``concurrency`` requests in flight (a thread pool).
- **Budget**: ``request_budget`` caps the HTTP requests this predictor sends over its lifetime (retries
  included, cache hits free). When it is spent, :class:`BudgetExceeded` is raised before any further request
  is sent; the predictions finished so far travel on the exception (``err.predictions``, input order, ``None``
  where unfinished; the evaluation writes those rows and records the partial coverage), and with a cache
  the completed requests are on disk, so a rerun pays only for the rest. ``requests_made`` counts the
  requests sent (the evaluation's request accounting reads it).
- **Invalid replies**: a reply the task cannot parse is a prediction of ``None`` (scored wrong) whose
  details say so (``details["invalid"]``, next to the task's own parse details).
- **Cache**: with ``cache_dir``, successful replies are stored (:mod:`slmforge.prediction.response_cache`)
  and a repeat of the same model + messages + parameters makes no request. A cache hit reports the latency
  the original request had (``details["cache_hit"] = True``), so latency statistics survive reruns.
- **Confidence** is ``exp(sum of the reply's token logprobs)`` when the endpoint returns logprobs
  (p(the whole reply)); ``None`` otherwise.
- **Latency** is the wall time of the attempt that succeeded. Waiting on retries is reported separately
  (``details["total_ms"]``): it measures the evaluation's own burst against a rate limit, not what one
  production request would see.
- **Structured outputs** (``structured_output``, JSON tasks only): ``json_schema`` sends the task
  schema's JSON Schema in OpenAI's strict form (:func:`strict_json_schema`) as ``response_format``, so
  the endpoint decodes under it (the API counterpart of ``eval.constrained=true``); ``json_object`` asks
  only for some JSON object (JSON mode); ``none`` sends nothing (prompt only). The schema is part of the
  request, hence of the cache key. An endpoint that answers 400/422 naming ``response_format`` (it does
  not support it, or rejects the schema) stops the evaluation with one :class:`APIConfigError` naming
  ``api_baselines.<name>.structured_output``, instead of one failed row per example; there is no silent fallback to
  JSON mode, because the record would then describe a baseline that was not the one measured.
"""

from __future__ import annotations

import copy
import email.utils
import ipaddress
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import openai

from slmforge.errors import APIConfigError
from slmforge.prediction.base import IncompletePredictions, Prediction
from slmforge.prediction.response_cache import ResponseCache, cache_key
from slmforge.prediction.shots import shots_for
from slmforge.tasks.base import Task

log = logging.getLogger(__name__)

# Longest wait honoured from a Retry-After header or computed by backoff: a misbehaving server asking for an
# hour must not silently stall an evaluation (the request fails and is recorded instead).
MAX_BACKOFF_S = 60.0

STRUCTURED_OUTPUTS = ("json_schema", "json_object", "none")
# What OpenAI's strict mode accepts (Structured Outputs, "supported schemas"); anything else is dropped.
STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "anyOf", "enum", "const",
        "description", "title", "$defs", "$ref", "pattern", "format", "multipleOf", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
    }
)  # fmt: skip
STRICT_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
# A 400/422 whose message says this is about the response format (OpenAI, vLLM, llama.cpp, LiteLLM wordings).
_RESPONSE_FORMAT_ERROR = re.compile(
    r"response_format|json_schema|json_object|structured|schema", re.IGNORECASE
)


def _is_nullable(node: Mapping[str, Any]) -> bool:
    kind = node.get("type")
    return (
        kind == "null"
        or (isinstance(kind, list) and "null" in kind)
        or any(isinstance(o, Mapping) and _is_nullable(o) for o in node.get("anyOf", ()))
        or ("enum" in node and None in node["enum"])
    )


def strict_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (e.g. :meth:`Schema.to_json_schema`) in the form OpenAI's strict Structured Outputs take.

    At every depth: each object lists all its properties in ``required`` and has ``additionalProperties:
    false``; a property that was optional becomes nullable (``anyOf: [<it>, {"type": "null"}]``) so that
    leaving it out is still expressible (as null); keywords strict mode rejects (``$schema``,
    ``minLength``/``maxLength``, ``uniqueItems``, ``default``, ``format`` values it does not know...) are
    dropped, which only loosens what the endpoint enforces (the task's own parsing still checks them). The
    root must be an object. The input is not modified.
    """
    if schema.get("type") != "object":
        raise ValueError(
            f"strict structured outputs need an object at the root, got type {schema.get('type')!r}"
        )

    def convert(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return copy.deepcopy(node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in STRICT_KEYWORDS or (key == "format" and value not in STRICT_FORMATS):
                continue
            if key in ("properties", "$defs"):
                out[key] = {name: convert(sub) for name, sub in value.items()}
            elif key == "items":
                out[key] = convert(value)
            elif key == "anyOf":
                out[key] = [convert(option) for option in value]
            else:
                out[key] = copy.deepcopy(value)
        if out.get("type") == "object" or "properties" in out:
            props = out.setdefault("properties", {})
            required = set(node.get("required", ()))
            for name, sub in props.items():
                if name not in required and not _is_nullable(sub):
                    props[name] = (
                        {**sub, "anyOf": [*sub["anyOf"], {"type": "null"}]}
                        if "anyOf" in sub
                        else {"anyOf": [sub, {"type": "null"}]}
                    )
            out["required"] = list(props)
            out["additionalProperties"] = False
        return out

    return convert(schema)


class BudgetExceeded(IncompletePredictions):
    """The request budget is spent. Nothing more was sent.

    ``predictions``: one entry per input example, in order; a :class:`Prediction` for every example that
    finished (successes, recorded errors and cache hits), ``None`` for the rest. ``requests_made`` and
    ``request_budget`` say where the budget stands.
    """

    def __init__(
        self, message: str, predictions: list[Prediction | None], requests_made: int, request_budget: int
    ) -> None:
        super().__init__(message, predictions)
        self.requests_made = requests_made
        self.request_budget = request_budget

    @property
    def completed(self) -> dict[int, Prediction]:
        """The finished predictions by example index."""
        return {i: p for i, p in enumerate(self.predictions) if p is not None}


class _BudgetSpent(Exception):
    """Internal: a worker found the budget spent before sending."""


class _Malformed(Exception):
    """Internal: the reply was not an OpenAI chat completion."""


class _FormatRejected(Exception):
    """Internal: the endpoint rejected the request's response_format (the message says how)."""


def is_loopback(base_url: str) -> bool:
    """Whether ``base_url`` points at this machine (no API key needed for a local server)."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain(value: Any) -> Any:
    """Hydra hands over DictConfig/ListConfig; the task and the cache key want plain Python values."""
    try:
        from omegaconf import OmegaConf
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a dependency
        return value
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _retry_after_s(error: openai.APIStatusError) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``Retry-After`` seconds or HTTP date)."""
    headers = error.response.headers
    try:
        if headers.get("retry-after-ms") is not None:
            return float(headers["retry-after-ms"]) / 1000.0
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _extract(completion: Any) -> dict[str, Any]:
    """The parts of a chat completion we keep, checked field by field (the client does not validate)."""
    try:
        choices = completion.choices
        if not isinstance(choices, list) or not choices:
            raise _Malformed("reply has no choices list")
        choice = choices[0]
        content = choice.message.content
        if not isinstance(content, str):
            raise _Malformed(f"choices[0].message.content is {type(content).__name__}, not text")
        logprobs = None
        lp = getattr(choice, "logprobs", None)
        if lp is not None and getattr(lp, "content", None) is not None:
            logprobs = [float(t.logprob) for t in lp.content]
        usage = getattr(completion, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    except _Malformed:
        raise
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as e:
        raise _Malformed(f"reply is not a chat completion ({type(e).__name__}: {e})") from e
    return {
        "content": content,
        "logprobs": logprobs,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "finish_reason": getattr(choice, "finish_reason", None),
    }


class APIPredictor:
    """Generate-then-parse predictions from an OpenAI-compatible chat-completions endpoint.

    task: parses replies (``task.parse``) and builds prompts (``task.messages``).
    model: the model name the endpoint serves (e.g. ``gpt-4o-mini``; ``slmforge-serve`` serves its
        ``model.name``).
    base_url: the endpoint, ending in ``/v1``.
    api_key_env: the environment variable holding the API key. Required unless ``base_url`` is loopback.
    max_tokens / temperature / stop: generation parameters (part of the cache key).
    concurrency: requests in flight at once. timeout_s: per attempt.
    max_retries / backoff_s: retry policy (see the module docstring).
    request_budget: HTTP requests this predictor may send over its lifetime (``None``: unlimited).
    cache_dir: where replies are cached (``None``: no cache).
    logprobs: ask for token logprobs (for ``confidence``); set ``False`` for endpoints that reject it.
    shots: few-shot examples, rendered as earlier chat turns (or a callable picking them per example). name: the run's display name.
    structured_output: ``json_schema`` (default) | ``json_object`` | ``none``: what ``response_format`` a JSON
        task sends (module docstring); tasks whose answer is not JSON send none. ``json_schema`` needs the
        task's schema; a JSON task without one falls back to ``json_object``.
    """

    def __init__(
        self,
        task: Task,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_tokens: int = 64,
        temperature: float = 0.0,
        concurrency: int = 8,
        timeout_s: float = 30.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        request_budget: int | None = None,
        cache_dir: str | None = None,
        logprobs: bool = True,
        shots: Sequence[dict[str, Any]] = (),
        name: str | None = None,
        stop: Sequence[str] | None = None,
        structured_output: str | None = "json_schema",
    ) -> None:
        if concurrency < 1:
            raise APIConfigError(f"concurrency={concurrency}; it must be at least 1")
        if max_retries < 0 or max_tokens < 1 or timeout_s <= 0:
            raise APIConfigError("max_retries must be >= 0, max_tokens >= 1 and timeout_s > 0")
        if request_budget is not None and request_budget < 0:
            raise APIConfigError(f"request_budget={request_budget}; use null for no limit")
        api_key = os.environ.get(api_key_env) or None
        if api_key is None and not is_loopback(base_url):
            raise APIConfigError(
                f"the environment variable {api_key_env} is not set, and {base_url} needs an API key. "
                f"`export {api_key_env}=...`, or point api_key_env at the variable that holds the key"
            )
        self.task = task
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.stop = list(_plain(stop)) if stop else None
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.request_budget = request_budget
        self.logprobs = bool(logprobs)
        # A callable picks shots per example (e.g. the most similar training examples).
        self.shots = shots if callable(shots) else [dict(s) for s in (_plain(shots) or [])]
        self.name = name or f"{model}{f'-{len(self.shots)}shot' if self.shots else '-zero-shot'}"
        self.cache = ResponseCache(cache_dir) if cache_dir else None
        self.structured_output, self.response_format = _response_format(task, structured_output)
        self._rejected: str | None = None  # set when the endpoint refused response_format (stops sending)
        # max_retries=0: retries happen in _request, where they are counted and honour the budget.
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "not-needed", timeout=self.timeout_s, max_retries=0
        )
        self._lock = threading.Lock()
        self.requests_made = 0

    # ---- public ---------------------------------------------------------------------------------------
    def predict(self, examples: list[dict[str, Any]]) -> list[Prediction]:
        """Predictions in input order; raises :class:`BudgetExceeded` (carrying the partial results) only
        when the request budget runs out."""
        examples = list(examples)
        results: list[Prediction | None] = [None] * len(examples)
        budget_hit = threading.Event()

        def work(i: int) -> None:
            if self._rejected is not None:
                return
            try:
                results[i] = self._predict_one(examples[i])
            except _BudgetSpent:
                budget_hit.set()
            except _FormatRejected as e:
                with self._lock:
                    self._rejected = self._rejected or str(e)

        if examples:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(examples))) as pool:
                list(pool.map(work, range(len(examples))))
        if self._rejected is not None:
            raise APIConfigError(self._rejected)
        if budget_hit.is_set():
            done = sum(p is not None for p in results)
            raise BudgetExceeded(
                f"request budget exhausted: {self.requests_made} HTTP request(s) sent to {self.base_url} "
                f"(request_budget={self.request_budget}; retries count, cache hits do not). "
                f"{done}/{len(examples)} examples finished; their predictions are on this exception's "
                f".predictions (None where unfinished). Raise request_budget (e.g. baseline.request_budget="
                f"{max(1, self.request_budget or 0) * 2}) or set it to null for no limit"
                + (
                    "; finished requests are cached, so a rerun pays only for the rest."
                    if self.cache is not None
                    else "."
                ),
                predictions=results,
                requests_made=self.requests_made,
                request_budget=int(self.request_budget or 0),
            )
        return [p for p in results if p is not None]

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "api",
            "method": "k_shot" if self.shots else "zero_shot",
            "name": self.name,
            "model": self.model,
            "base_url": self.base_url,
            "decoding": "generate_then_parse",
            "k": len(self.shots),
            "adapter": None,
            "params_m": None,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "request_budget": self.request_budget,
            # What response_format was sent (json_schema: the task schema, strict), so a record says
            # whether the endpoint decoded under the schema.
            "structured_output": self.structured_output,
            # Each request is timed on its own: these latencies are the per-request percentiles.
            "measures_request_latency": True,
        }

    def close(self) -> None:
        """Release the HTTP connection pool and the cache file (also safe to leave to garbage collection)."""
        self.client.close()
        if self.cache is not None:
            self.cache.close()

    def params(self) -> dict[str, Any]:
        """The generation parameters sent with every request (and hashed into cache keys)."""
        p: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.logprobs:
            p["logprobs"] = True
        if self.stop:
            p["stop"] = self.stop
        if self.response_format is not None:
            p["response_format"] = self.response_format
        return p

    # ---- internals ------------------------------------------------------------------------------------
    def _rejection_message(self, error: str) -> str:
        key = f"api_baselines.{self.name}.structured_output"  # the override that changes it
        if self.structured_output == "json_schema":
            what = "structured outputs with the task's JSON Schema (response_format json_schema, strict)"
            fix = (
                f"set {key}=json_object (JSON mode, no schema) if the endpoint has JSON mode, or {key}=none "
                "(the prompt alone asks for JSON)"
            )
        else:
            what = "JSON mode (response_format json_object)"
            fix = f"set {key}=none (the prompt alone asks for JSON)"
        return (
            f"{self.base_url} (model {self.model}) rejected {what}: {error}. The endpoint or model does not "
            f"support it, or refuses this schema; {fix}."
        )

    def _predict_one(self, example: dict[str, Any]) -> Prediction:
        messages = self.task.messages(example, shots_for(self.shots, example))
        params = self.params()
        # `is not None`: an empty cache has len() 0 and would be falsy.
        key = cache_key(self.model, messages, params) if self.cache is not None else None
        if self.cache is not None and key is not None:
            t0 = time.perf_counter()
            hit = self.cache.get(key)
            if hit is not None:
                lookup_ms = (time.perf_counter() - t0) * 1000.0
                return self._to_prediction(hit, {"cache_hit": True, "lookup_ms": lookup_ms, "attempts": 0})
        entry, info = self._request(messages, params)
        if entry is None:
            return Prediction(
                pred=None, confidence=None, latency_ms=info["total_ms"], raw_output=None, details=info
            )
        if self.cache is not None and key is not None:
            self.cache.put(key, entry)
        return self._to_prediction(entry, {"cache_hit": False, **info})

    def _to_prediction(self, entry: dict[str, Any], extra: dict[str, Any]) -> Prediction:
        raw = entry["content"]
        try:
            pred, details = self.task.parse(raw)
        except Exception as e:  # Task.parse promises not to raise; one bad parser must not end the run
            pred, details = None, {"parse_error": f"{type(e).__name__}: {e}"}
        if pred is None:
            details = {**details, "invalid": f"the reply does not parse as a {self.task.name} answer"}
        lps = entry.get("logprobs")
        confidence = math.exp(sum(lps)) if lps else None
        return Prediction(
            pred=pred,
            confidence=confidence,
            latency_ms=float(entry["latency_ms"]),
            prompt_tokens=int(entry.get("prompt_tokens") or 0),
            completion_tokens=int(entry.get("completion_tokens") or 0),
            raw_output=raw,
            details={**dict(details), "finish_reason": entry.get("finish_reason"), **extra},
        )

    def _reserve(self) -> None:
        """Count one request against the budget, or refuse before anything is sent."""
        with self._lock:
            if self.request_budget is not None and self.requests_made >= self.request_budget:
                raise _BudgetSpent
            self.requests_made += 1

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_BACKOFF_S)
        # Exponential with "equal jitter": half the step fixed, half random, so concurrent workers that
        # were rate-limited together do not all come back at the same instant.
        step = min(self.backoff_s * 2**attempt, MAX_BACKOFF_S)
        return step / 2 + random.uniform(0, step / 2)

    def _request(
        self, messages: list[dict[str, str]], params: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """(cache entry, info) on success; (None, info with "error") when the example failed."""
        start = time.perf_counter()
        last_error = ""
        attempts = 0
        for attempt in range(self.max_retries + 1):
            self._reserve()
            attempts += 1
            retry_after: float | None = None
            t0 = time.perf_counter()
            try:
                completion = self.client.chat.completions.create(
                    model=self.model, messages=messages, **params
                )
                latency_ms = (time.perf_counter() - t0) * 1000.0
                entry = _extract(completion)
            except openai.APIStatusError as e:
                last_error = f"HTTP {e.status_code}: {_short(e.message)}"
                if (
                    e.status_code in (400, 422)
                    and self.response_format is not None
                    and _RESPONSE_FORMAT_ERROR.search(str(e.message))
                ):
                    raise _FormatRejected(self._rejection_message(last_error)) from None
                if e.status_code != 429 and e.status_code < 500:
                    break  # a configuration problem: the same request fails the same way again
                retry_after = _retry_after_s(e)
            except openai.APITimeoutError:
                last_error = f"timeout: no reply within timeout_s={self.timeout_s:g}"
            except openai.APIConnectionError as e:
                last_error = f"connection error: {_short(str(e.__cause__ or e))}"
            except _Malformed as e:
                last_error = f"malformed reply: {e}"
                break
            except (openai.APIResponseValidationError, ValueError) as e:  # JSONDecodeError is a ValueError
                last_error = f"malformed reply: {type(e).__name__}: {_short(str(e))}"
                break
            except openai.OpenAIError as e:
                last_error = f"{type(e).__name__}: {_short(str(e))}"
                break
            else:
                entry["latency_ms"] = latency_ms
                total_ms = (time.perf_counter() - start) * 1000.0
                return entry, {"attempts": attempts, "total_ms": total_ms}
            if attempt < self.max_retries:
                wait = self._backoff(attempt, retry_after)
                log.debug(
                    "%s: %s; retry %d/%d in %.2fs", self.name, last_error, attempt + 1, self.max_retries, wait
                )
                time.sleep(wait)
        total_ms = (time.perf_counter() - start) * 1000.0
        error = f"{last_error} (after {attempts} attempt{'s' if attempts != 1 else ''})"
        log.warning("%s: request failed: %s", self.name, error)
        return None, {"error": error, "attempts": attempts, "total_ms": total_ms}


def _response_format(task: Task, structured_output: str | None) -> tuple[str, dict[str, Any] | None]:
    """(the mode actually used, the ``response_format`` to send or None) for ``task`` (module docstring)."""
    mode = "none" if structured_output in (None, False) else str(structured_output).strip().lower()
    if mode not in STRUCTURED_OUTPUTS:
        raise APIConfigError(
            f"api_baselines.<name>.structured_output={structured_output!r}; use one of "
            f"{', '.join(STRUCTURED_OUTPUTS)}"
        )
    protocol = task.protocol()
    if mode == "none" or protocol.output_format != "json":
        return "none", None
    schema = protocol.schema
    if mode == "json_schema" and schema is not None:
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{task.name}_record")[:64]
        return mode, {
            "type": "json_schema",
            "json_schema": {
                "name": name,
                "schema": strict_json_schema(schema.to_json_schema()),
                "strict": True,
            },
        }
    return "json_object", {"type": "json_object"}


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
