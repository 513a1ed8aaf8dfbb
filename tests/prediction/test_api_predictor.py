"""APIPredictor against a real OpenAI-compatible server on loopback (the tiny model, faults injected on
purpose): parsing, token accounting, retries, timeouts, malformed replies, the cache, the request budget
and the concurrency limit, each checked against the server's own request counters."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator

import pytest

from slmforge.evaluation.runner import evaluate_split
from slmforge.modeling.loading import LoadedModel, ModelSpec, load_model
from slmforge.prediction.api import APIConfigError, APIPredictor, BudgetExceeded, is_loopback
from slmforge.prediction.response_cache import ResponseCache, cache_key
from slmforge.prompting import render_prompt
from slmforge.records import read_predictions, read_results
from slmforge.reporting import leaderboard, write_report
from slmforge.serving import ServerHandle, start_server
from slmforge.tasks.classification import ClassificationTask

LABELS = ["billing", "technical", "account"]
EXAMPLES = [
    {"id": "0", "text": "I was charged twice this month.", "label": "billing"},
    {"id": "1", "text": "The app crashes whenever I open settings, every single time.", "label": "technical"},
    {"id": "2", "text": "Please delete my account.", "label": "account"},
    {"id": "3", "text": "Refund?", "label": "billing"},
]


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model(ModelSpec(name="tiny", source="tiny"))


@pytest.fixture
def task() -> ClassificationTask:
    return ClassificationTask(labels=LABELS)


@pytest.fixture
def serve(tiny: LoadedModel) -> Iterator[Callable[..., ServerHandle]]:
    """Start servers with the given faults; stop them after the test. ``stop`` waits for requests still
    generating server-side (a timed-out request does), so they never overlap the next test."""
    handles: list[ServerHandle] = []

    def start(**faults: object) -> ServerHandle:
        handles.append(start_server(tiny.model, tiny.tokenizer, model_name="tiny", **faults))
        return handles[-1]

    yield start
    for h in handles:
        h.stop()
        assert h.stats()["in_flight"] == 0


def _predictor(task: ClassificationTask, server: ServerHandle, **kw: object) -> APIPredictor:
    defaults: dict[str, object] = {"max_tokens": 4, "backoff_s": 0.01, "timeout_s": 20}
    return APIPredictor(task, model="tiny", base_url=server.url, **{**defaults, **kw})


def test_success_path_parses_counts_tokens_and_keeps_order(tiny, task, serve) -> None:
    server = serve()
    preds = _predictor(task, server, concurrency=3).predict(EXAMPLES)

    assert len(preds) == len(EXAMPLES)
    tok = tiny.tokenizer
    for ex, p in zip(EXAMPLES, preds, strict=True):
        # In input order: each prediction's prompt size is its own example's.
        expected_prompt = len(
            tok(render_prompt(tok, task.messages(ex)), add_special_tokens=False)["input_ids"]
        )
        assert p.prompt_tokens == expected_prompt
        assert p.completion_tokens == 4  # the random model never emits EOS within 4 tokens
        assert isinstance(p.raw_output, str)
        assert "error" not in p.details and p.details["cache_hit"] is False and p.details["attempts"] == 1
        # The reply went through ClassificationTask.parse: the random model's junk maps to no label.
        assert task.parse(p.raw_output) == (p.pred, {"match": p.details["match"]})
        assert p.pred is None and p.details["match"] == "none"
        assert p.confidence is not None and 0 < p.confidence < 1
        assert p.latency_ms > 0
    assert len({p.prompt_tokens for p in preds}) == len(EXAMPLES)
    assert server.stats()["by_status"] == {"200": len(EXAMPLES)}


def test_confidence_is_the_product_of_token_probabilities(task, serve) -> None:
    import openai

    server = serve()
    [p] = _predictor(task, server).predict(EXAMPLES[:1])
    reply = openai.OpenAI(base_url=server.url, api_key="x").chat.completions.create(
        model="tiny", messages=task.messages(EXAMPLES[0]), max_tokens=4, temperature=0, logprobs=True
    )
    assert p.raw_output == reply.choices[0].message.content
    assert p.confidence == pytest.approx(math.exp(sum(t.logprob for t in reply.choices[0].logprobs.content)))
    [q] = _predictor(task, server, logprobs=False).predict(EXAMPLES[:1])
    assert q.confidence is None and q.raw_output == p.raw_output


def test_rate_limit_is_retried_then_succeeds(task, serve) -> None:
    server = serve(fail_first_n=2, fail_status=429)
    [p] = _predictor(task, server, max_retries=4).predict(EXAMPLES[:1])
    assert "error" not in p.details and p.raw_output is not None and p.completion_tokens == 4
    assert p.details["attempts"] == 3
    stats = server.stats()
    assert stats["requests"] == 3 and stats["by_status"] == {"429": 2, "200": 1}


def test_retry_after_is_honoured_and_not_counted_as_latency(task, serve) -> None:
    server = serve(fail_first_n=1, fail_status=503, retry_after_s=0.4)
    [p] = _predictor(task, server).predict(EXAMPLES[:1])
    assert p.details["attempts"] == 2
    assert p.details["total_ms"] >= 400  # waited as the server asked, not the 10 ms backoff
    assert p.latency_ms < p.details["total_ms"] - 350  # latency is the successful attempt only


def test_persistent_5xx_gives_up_after_max_retries(task, serve) -> None:
    server = serve(fail_first_n=100, fail_status=503)
    [p] = _predictor(task, server, max_retries=2).predict(EXAMPLES[:1])
    assert p.pred is None and p.confidence is None and p.raw_output is None
    assert "HTTP 503" in p.details["error"] and "after 3 attempts" in p.details["error"]
    assert server.stats()["requests"] == 3


def test_client_errors_are_not_retried(task, serve) -> None:
    server = serve()
    predictor = APIPredictor(task, model="not-served", base_url=server.url, max_retries=4, backoff_s=0.01)
    [p] = predictor.predict(EXAMPLES[:1])
    assert "HTTP 404" in p.details["error"] and p.details["attempts"] == 1
    assert server.stats()["requests"] == 1


def test_timeout_is_recorded_after_all_attempts(task, serve) -> None:
    server = serve(delay_ms=800)
    [p] = _predictor(task, server, timeout_s=0.25, max_retries=1).predict(EXAMPLES[:1])
    assert p.pred is None and p.raw_output is None
    assert "timeout" in p.details["error"] and p.details["attempts"] == 2
    assert server.stats()["requests"] == 2


def test_malformed_replies_are_recorded_not_raised(task, serve) -> None:
    server = serve(malformed_first_n=2)  # one broken JSON, one valid JSON of the wrong shape
    preds = _predictor(task, server, concurrency=1, max_retries=3).predict(EXAMPLES[:3])
    for p in preds[:2]:
        assert p.pred is None and p.confidence is None and p.raw_output is None
        assert p.details["error"].startswith("malformed reply") and p.details["attempts"] == 1
    assert "error" not in preds[2].details and preds[2].raw_output is not None
    assert server.stats()["requests"] == 3


def test_cache_hit_makes_no_request_and_reproduces_predictions(task, serve, tmp_path) -> None:
    server = serve()
    first = _predictor(task, server, cache_dir=str(tmp_path)).predict(EXAMPLES)
    assert server.stats()["requests"] == len(EXAMPLES)

    again = _predictor(task, server, cache_dir=str(tmp_path))  # a new process would see the same file
    second = again.predict(EXAMPLES)
    assert server.stats()["requests"] == len(EXAMPLES)  # nothing was sent
    assert again.cache is not None and again.cache.stats() == {"hits": len(EXAMPLES), "misses": 0}
    assert again.requests_made == 0
    for a, b in zip(first, second, strict=True):
        assert (a.pred, a.raw_output, a.confidence, a.prompt_tokens, a.completion_tokens) == (
            b.pred,
            b.raw_output,
            b.confidence,
            b.prompt_tokens,
            b.completion_tokens,
        )
        assert b.latency_ms == a.latency_ms  # the original request's latency, kept in the cache entry
        assert b.details["cache_hit"] is True and a.details["cache_hit"] is False

    # Different generation parameters are a different request.
    _predictor(task, server, cache_dir=str(tmp_path), max_tokens=3).predict(EXAMPLES[:1])
    assert server.stats()["requests"] == len(EXAMPLES) + 1


def test_budget_exhaustion_raises_before_sending_and_keeps_partial_results(task, serve) -> None:
    server = serve()
    predictor = _predictor(task, server, concurrency=1, request_budget=3)
    with pytest.raises(BudgetExceeded) as info:
        predictor.predict(EXAMPLES)
    err = info.value
    assert server.stats()["requests"] == 3 and err.requests_made == 3 and err.request_budget == 3
    assert "3 HTTP request(s)" in str(err) and "request_budget" in str(err) and "3/4 examples" in str(err)
    assert len(err.predictions) == len(EXAMPLES)
    assert all(p is not None and p.raw_output is not None for p in err.predictions[:3])
    assert err.predictions[3] is None and sorted(err.completed) == [0, 1, 2]
    # Spent stays spent: nothing more is sent.
    with pytest.raises(BudgetExceeded):
        predictor.predict(EXAMPLES[:1])
    assert server.stats()["requests"] == 3


def test_retries_count_against_the_budget(task, serve) -> None:
    server = serve(fail_first_n=2, fail_status=429)
    with pytest.raises(BudgetExceeded) as info:
        _predictor(task, server, request_budget=2).predict(EXAMPLES[:1])
    assert info.value.predictions == [None] and server.stats()["requests"] == 2


def test_concurrency_is_bounded(task, serve) -> None:
    server = serve(delay_ms=150)  # long enough for requests to overlap whenever the client allows it
    preds = _predictor(task, server, concurrency=2).predict(EXAMPLES + EXAMPLES)
    assert len(preds) == 8 and all("error" not in p.details for p in preds)
    assert server.stats()["max_in_flight"] == 2


def test_missing_api_key_is_an_error_unless_loopback(task, serve, monkeypatch) -> None:
    monkeypatch.delenv("SLMFORGE_TEST_KEY", raising=False)
    with pytest.raises(APIConfigError, match="SLMFORGE_TEST_KEY"):
        APIPredictor(
            task, model="gpt-4o-mini", base_url="https://api.example.com/v1", api_key_env="SLMFORGE_TEST_KEY"
        )
    assert is_loopback("http://localhost:8000/v1") and is_loopback("http://[::1]:1/v1")
    assert not is_loopback("https://api.openai.com/v1")
    # A loopback server needs no key.
    assert _predictor(task, serve(), api_key_env="SLMFORGE_TEST_KEY").predict(EXAMPLES[:1])[0].raw_output


def test_api_key_is_sent_from_the_named_variable(tiny, task, monkeypatch) -> None:
    with start_server(tiny.model, tiny.tokenizer, model_name="tiny", api_key="sekrit") as server:
        monkeypatch.setenv("SLMFORGE_TEST_KEY", "sekrit")
        [ok] = _predictor(task, server, api_key_env="SLMFORGE_TEST_KEY").predict(EXAMPLES[:1])
        monkeypatch.setenv("SLMFORGE_TEST_KEY", "wrong")
        [bad] = _predictor(task, server, api_key_env="SLMFORGE_TEST_KEY", max_retries=3).predict(EXAMPLES[:1])
        assert server.stats()["by_status"] == {"200": 1, "401": 1}  # a 401 is not retried
    assert "error" not in ok.details
    assert "HTTP 401" in bad.details["error"]


def test_describe(task, serve) -> None:
    shots = [{"text": "double charge", "label": "billing"}]
    d = _predictor(task, serve(), shots=shots).describe()
    assert {k: d[k] for k in ("kind", "model", "decoding", "k", "method")} == {
        "kind": "api",
        "model": "tiny",
        "decoding": "generate_then_parse",
        "k": 1,
        "method": "k_shot",
    }
    assert d["base_url"].startswith("http://127.0.0.1:")


def test_response_cache_is_thread_safe_and_keys_are_canonical(tmp_path) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert cache_key("m", msgs, {"a": 1, "b": 2}) == cache_key("m", msgs, {"b": 2, "a": 1})
    assert cache_key("m", msgs, {"a": 1}) != cache_key("m2", msgs, {"a": 1})
    cache = ResponseCache(tmp_path)

    def worker(w: int) -> None:
        for i in range(50):
            cache.put(f"{w}-{i}", {"content": f"{w}/{i}"})
            assert cache.get(f"{w}-{i}") == {"content": f"{w}/{i}"}

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 400 and cache.stats() == {"hits": 400, "misses": 0}
    assert cache.get("absent") is None and cache.misses == 1
    cache.close()
    with ResponseCache(tmp_path) as reopened:  # persisted on disk
        assert reopened.get("7-49") == {"content": "7/49"}


def test_no_examples_no_requests(task, serve) -> None:
    server = serve()
    assert _predictor(task, server).predict([]) == []
    assert server.stats()["requests"] == 0


def test_baseline_config_instantiates_with_the_task_injected(task, serve, tmp_path, monkeypatch) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from slmforge.config import config_dir

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    cfg = OmegaConf.load(f"{config_dir()}/baseline/api.yaml")
    assert cfg.base_url == "https://api.openai.com/v1" and cfg.model == "gpt-4o-mini"
    assert cfg.api_key_env == "OPENAI_API_KEY" and cfg._partial_ is True
    server = serve()
    cfg.base_url, cfg.model, cfg.cache_dir, cfg.max_tokens = server.url, "tiny", str(tmp_path), 4
    factory = instantiate(cfg)
    predictor = factory(task=task, shots=[EXAMPLES[3]])
    assert isinstance(predictor, APIPredictor) and predictor.describe()["k"] == 1
    [p] = predictor.predict(EXAMPLES[:1])
    assert p.raw_output is not None and server.stats()["requests"] == 1


def _evaluate(predictor: APIPredictor, task: ClassificationTask, out_dir, validation=None):
    """The evaluation every command runs (results.json + predictions.jsonl), as ``slmforge-compare`` calls it
    for an API baseline (no latency probe: each request is timed)."""
    return evaluate_split(
        predictor, task, EXAMPLES, name=predictor.name, split="test", out_dir=out_dir, latency_probe_n=0,
        predictor_info={"kind": "api", "method": "api"}, data_info={"name": "fixture"},
        validation_examples=validation,
    )  # fmt: skip


def test_api_record_has_request_latency_percentiles_also_from_the_cache(task, serve, tmp_path) -> None:
    server = serve()
    first, _ = _evaluate(_predictor(task, server, cache_dir=str(tmp_path / "cache")), task, tmp_path / "a")
    again, _ = _evaluate(_predictor(task, server, cache_dir=str(tmp_path / "cache")), task, tmp_path / "b")
    assert server.stats()["requests"] == len(EXAMPLES)  # the rerun came from the cache
    for record in (first, again, read_results(tmp_path / "a"), read_results(tmp_path / "b")):
        assert all(
            math.isfinite(record.latency_ms[q]) and record.latency_ms[q] > 0 for q in ("p50", "p95", "p99")
        )
    # A cache hit reports its original request's latency, so a rerun keeps the distribution.
    assert again.latency_ms == first.latency_ms
    assert first.requests == {"attempted": 4, "failed": 0, "cached": 0, "budget": None, "coverage": 1.0}
    assert again.requests == {"attempted": 0, "failed": 0, "cached": 4, "budget": None, "coverage": 1.0}


def test_malformed_and_unparseable_replies_are_invalid_rows_every_reader_accepts(
    task, serve, tmp_path
) -> None:
    server = serve(malformed_first_n=2)
    record, _ = _evaluate(_predictor(task, server, concurrency=1, max_retries=0), task, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [("pred" in row, row["pred"], row["correct"]) for row in lines] == [(True, None, 0.0)] * 4
    rows = read_predictions(tmp_path)
    by_why = sorted("error" in r.details for r in rows)
    assert by_why == [False, False, True, True]
    for r in rows:
        if "error" in r.details:  # not a completion at all
            assert r.details["error"].startswith("malformed reply") and r.raw_output is None
        else:  # a completion whose text maps to no label
            assert r.details["invalid"] == "the reply does not parse as a classification answer"
            assert r.details["match"] == "none" and isinstance(r.raw_output, str)
    assert record.requests == {"attempted": 4, "failed": 2, "cached": 0, "budget": None, "coverage": 0.5}
    assert record.metrics["accuracy"] == 0.0 and record.metrics["invalid_rate"] == 1.0
    answered = [r.latency_ms for r in rows if "error" not in r.details]
    assert record.latency_ms["p50"] == pytest.approx(sum(answered) / 2, abs=1e-3)  # replies only


def test_failed_requests_are_counted_and_never_priced_free(task, serve, tmp_path) -> None:
    server = serve(fail_first_n=100, fail_status=503)
    record, rows = _evaluate(_predictor(task, server, max_retries=1), task, tmp_path)
    assert server.stats()["requests"] == 8
    assert record.requests == {"attempted": 8, "failed": 4, "cached": 0, "budget": None, "coverage": 0.0}
    assert all(r.correct == 0.0 and "HTTP 503" in r.details["error"] for r in rows)
    assert math.isnan(record.tokens["prompt_mean"]) and math.isnan(record.latency_ms["p50"])
    df = leaderboard([record], {"api": {"tiny": {"input_per_1k": 0.001, "output_per_1k": 0.002}}})
    assert (
        math.isnan(df.loc[0, "cost_per_1k_usd"]) and not df.loc[0, "pareto"] and df.loc[0, "coverage"] == 0.0
    )


def test_budget_exhaustion_writes_the_finished_rows_and_the_report_marks_them(task, serve, tmp_path) -> None:
    server = serve()
    predictor = _predictor(task, server, concurrency=1, request_budget=3)
    record, rows = _evaluate(predictor, task, tmp_path / "run", validation=EXAMPLES)
    assert server.stats()["requests"] == 3 and len(rows) == 3
    assert record.n == 4 and record.requests == {
        "attempted": 3, "failed": 0, "cached": 0, "budget": 3, "coverage": 0.75,
    }  # fmt: skip
    assert read_results(tmp_path / "run").requests["coverage"] == 0.75
    assert [r.id for r in read_predictions(tmp_path / "run")] == [r.id for r in rows]
    assert not (tmp_path / "run" / "predictions_validation.jsonl").exists()  # the budget was spent on test
    df = leaderboard([record], {"api": {"tiny": {"input_per_1k": 0.001, "output_per_1k": 0.002}}})
    md = write_report(df, tmp_path / "report").markdown.read_text()
    assert "| coverage |" in md and "| 75% |" in md
    assert "answered only 75% of 4 examples (1 example(s) not predicted (request budget of 3 spent))" in md


@pytest.mark.slow
def test_real_smollm2_answers_parse_to_labels() -> None:
    """The success path with a model that can follow the instruction (the real SmolLM2-135M-Instruct)."""
    from slmforge.modeling.loading import _SMOLLM2_GGUF

    lm = load_model(ModelSpec(**_SMOLLM2_GGUF))
    sentiment = ClassificationTask(labels=["positive", "negative"])
    examples = [
        {"text": "I love this product, it works perfectly!", "label": "positive"},
        {"text": "Absolutely wonderful experience, thank you!", "label": "positive"},
    ]
    with start_server(lm.model, lm.tokenizer, model_name="smollm2-135m") as server:
        preds = APIPredictor(sentiment, model="smollm2-135m", base_url=server.url, max_tokens=4).predict(
            examples
        )
    assert [p.pred for p in preds] == ["positive", "positive"]
    assert all(p.details["match"] in {"exact", "normalised", "mentioned"} for p in preds)
    assert all(0 < p.confidence < 1 and p.completion_tokens == 4 for p in preds)


# ---------------------------------------------------------------------------------------------------------
# Structured outputs: response_format for JSON tasks

NESTED = {
    "vendor": {"type": "string"},
    "total": {"type": "number", "minimum": 0},
    "date": {"type": "date", "required": False},
    "currency": {"type": "enum", "values": ["USD", "EUR"]},
    "tags": {"type": "list", "required": False},
    "buyer": {
        "type": "object",
        "fields": {"name": {"type": "string"}, "vat_id": {"type": "string", "required": False}},
    },
    "lines": {
        "type": "list",
        "items": {
            "type": "object",
            "fields": {"sku": {"type": "string"}, "qty": {"type": "number", "minimum": 1}},
        },
    },
}
DOCS = [
    {"id": "a", "text": "ACME Corp invoice, total 12.50 USD, buyer Bob.", "fields": {}},
    {"id": "b", "text": "Globex: 3 x widget, 99 EUR, for Alice (VAT DE123).", "fields": {}},
]


def test_strict_json_schema_of_a_nested_schema() -> None:
    from slmforge.prediction.api import strict_json_schema
    from slmforge.schema.spec import CALENDAR_DATE_PATTERN, Schema

    js = Schema.from_config(NESTED).to_json_schema()
    assert strict_json_schema(js) == {
        "type": "object",
        "properties": {
            "vendor": {"type": "string"},
            "total": {"type": "number", "minimum": 0},
            "date": {"anyOf": [{"type": "string", "pattern": CALENDAR_DATE_PATTERN}, {"type": "null"}]},
            "currency": {"type": "string", "enum": ["USD", "EUR"]},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}]},
            "buyer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "vat_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
                "required": ["name", "vat_id"],
                "additionalProperties": False,
            },
            "lines": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"sku": {"type": "string"}, "qty": {"type": "number", "minimum": 1}},
                    "required": ["sku", "qty"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["vendor", "total", "date", "currency", "tags", "buyer", "lines"],
        "additionalProperties": False,
    }
    assert js == Schema.from_config(NESTED).to_json_schema()  # the input is not modified


def test_strict_json_schema_makes_optional_properties_nullable_and_drops_what_strict_mode_rejects() -> None:
    from slmforge.prediction.api import strict_json_schema

    hand_written = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 40, "description": "who"},
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "format": "iso-4217"},
            "labels": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 3},
            "extra": {
                "type": "object",
                "properties": {"k": {"anyOf": [{"type": "string"}, {"type": "number"}]}},
            },
        },
        "required": ["name"],
        "default": {},
    }
    assert strict_json_schema(hand_written) == {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "who"},
            "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
            "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "labels": {
                "anyOf": [{"type": "array", "items": {"type": "string"}, "maxItems": 3}, {"type": "null"}]
            },
            "extra": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "k": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
                        },
                        "required": ["k"],
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ]
            },
        },
        "required": ["name", "when", "code", "labels", "extra"],
        "additionalProperties": False,
    }
    with pytest.raises(ValueError, match="object at the root"):
        strict_json_schema({"type": "array", "items": {"type": "string"}})


@pytest.fixture
def extraction():
    from slmforge.tasks.extraction import ExtractionTask

    return ExtractionTask(schema=NESTED)


def _json_predictor(task, server: ServerHandle, **kw: object) -> APIPredictor:
    from slmforge.schema.grammar import bounded_json_schema, max_output_bytes
    from slmforge.testing.openai_double import JSON_MAX_LIST_ITEMS, JSON_MAX_STRING_CHARS

    # Room for the longest reply the double's bounded schema allows.
    js = bounded_json_schema(
        task.schema, max_string_chars=JSON_MAX_STRING_CHARS, max_list_items=JSON_MAX_LIST_ITEMS
    )
    bound = max_output_bytes(js)
    defaults: dict[str, object] = {
        "max_tokens": bound + 1,
        "backoff_s": 0.01,
        "timeout_s": 120,
        "concurrency": 1,
    }
    return APIPredictor(task, model="tiny", base_url=server.url, **{**defaults, **kw})


def test_extraction_sends_the_strict_schema_and_the_double_answers_valid_json(
    extraction, serve, one_thread
) -> None:
    from slmforge.prediction.api import strict_json_schema

    server = serve()
    predictor = _json_predictor(extraction, server)
    assert predictor.describe()["structured_output"] == "json_schema"
    preds = predictor.predict(DOCS)
    bodies = server.request_bodies()
    assert len(bodies) == len(DOCS)
    for body in bodies:
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {
                "name": "extraction_record",
                "schema": strict_json_schema(extraction.schema.to_json_schema()),
                "strict": True,
            },
        }
    for p in preds:
        assert "error" not in p.details and p.details["finish_reason"] == "stop"
        assert p.details["valid_json"] is True and p.details["schema_ok"] is True, p.details["errors"]
        assert list(p.pred) == list(NESTED)  # every field, in schema order
        assert isinstance(p.pred["buyer"], dict) and isinstance(p.pred["lines"], list)
    # Without response_format the same random model does not produce the record.
    [free] = _json_predictor(extraction, server, structured_output="none", max_tokens=48).predict(DOCS[:1])
    assert "response_format" not in server.request_bodies()[-1]
    assert free.pred is None and free.details["valid_json"] is False


def test_json_object_mode_asks_for_json_only(extraction, serve, one_thread) -> None:
    server = serve()
    predictor = _json_predictor(extraction, server, structured_output="json_object", max_tokens=200)
    [p] = predictor.predict(DOCS[:1])
    assert server.request_bodies()[-1]["response_format"] == {"type": "json_object"}
    assert predictor.describe()["structured_output"] == "json_object"
    assert p.details["valid_json"] is True and isinstance(json.loads(p.raw_output), dict)


def test_an_endpoint_without_structured_outputs_stops_with_one_clear_error(
    extraction, serve, one_thread
) -> None:
    server = serve(unsupported_response_formats=["json_schema"])
    predictor = _json_predictor(extraction, server, max_retries=3)
    with pytest.raises(APIConfigError) as info:
        predictor.predict(DOCS + DOCS)
    message = str(info.value)
    assert "rejected structured outputs" in message and "HTTP 400" in message
    assert "'response_format' of type 'json_schema' is not supported" in message
    assert (
        ".structured_output=json_object" in message
        and ".structured_output=none" in message
        and "api_baselines." in message
    )
    assert server.stats()["by_status"] == {"400": 1}  # not retried, and no request after the first refusal
    # JSON mode is supported there; a refusal of it names only `none`.
    [ok] = _json_predictor(extraction, server, structured_output="json_object", max_tokens=200).predict(
        DOCS[:1]
    )
    assert ok.details["valid_json"] is True
    no_json = serve(unsupported_response_formats=["json_object", "json_schema"])
    with pytest.raises(
        APIConfigError, match=r"rejected JSON mode .*set api_baselines\..*\.structured_output=none"
    ):
        _json_predictor(extraction, no_json, structured_output="json_object").predict(DOCS[:1])


def test_the_double_checks_strict_schemas_like_openai(extraction, serve) -> None:
    import openai

    server = serve()
    client = openai.OpenAI(base_url=server.url, api_key="x", max_retries=0)
    msgs = [{"role": "user", "content": "hi"}]
    loose = extraction.schema.to_json_schema()  # $schema, and optional fields left out of `required`
    rf = {"type": "json_schema", "json_schema": {"name": "r", "schema": loose, "strict": True}}

    def refused(pattern: str) -> None:
        with pytest.raises(
            openai.BadRequestError, match=r"Invalid schema for response_format 'r': " + pattern
        ):
            client.chat.completions.create(model="tiny", messages=msgs, max_tokens=4, response_format=rf)

    refused(r"In context=\(\), '\$schema' is not permitted")
    loose.pop("$schema")
    refused(r"In context=\(\), 'required' is required .* Missing 'date'")
    loose["required"] = list(loose["properties"])
    loose["properties"]["buyer"]["required"] = ["name", "vat_id"]
    loose["properties"]["buyer"]["additionalProperties"] = True
    refused(
        r"In context=\('properties', 'buyer'\), 'additionalProperties' is required to be supplied and to be false"
    )
    bad_name = {"type": "json_schema", "json_schema": {"name": "my record", "schema": loose}}
    with pytest.raises(openai.BadRequestError, match=r"json_schema\.name"):
        client.chat.completions.create(model="tiny", messages=msgs, max_tokens=4, response_format=bad_name)
    with pytest.raises(openai.BadRequestError, match="response_format"):
        client.chat.completions.create(
            model="tiny", messages=msgs, max_tokens=4, response_format={"type": "xml"}
        )
    loose["properties"]["buyer"]["additionalProperties"] = False  # now strict: the double answers
    ok = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=4, response_format=rf)
    assert ok.choices[0].message.content.startswith("{")
    assert server.stats()["by_status"] == {"400": 5, "200": 1}


def test_structured_output_applies_to_json_tasks_only_and_is_part_of_the_request(
    task, extraction, serve, tmp_path
):
    server = serve()
    classifier = _predictor(task, server, structured_output="json_schema")
    assert (
        classifier.describe()["structured_output"] == "none" and "response_format" not in classifier.params()
    )
    classifier.predict(EXAMPLES[:1])
    assert "response_format" not in server.request_bodies()[-1]
    with pytest.raises(APIConfigError, match=r"api_baselines\.<name>\.structured_output='yaml'"):
        _predictor(extraction, server, structured_output="yaml")
    for off in ("none", None):
        assert _predictor(extraction, server, structured_output=off).describe()["structured_output"] == "none"
    # The response format is a generation parameter: a cached reply under one mode is not reused by another.
    schema_mode = _predictor(extraction, server, cache_dir=str(tmp_path))
    assert schema_mode.params()["response_format"]["type"] == "json_schema"
    msgs = extraction.messages(DOCS[0])
    json_mode = _predictor(extraction, server, cache_dir=str(tmp_path), structured_output="json_object")
    assert cache_key("tiny", msgs, schema_mode.params()) != cache_key("tiny", msgs, json_mode.params())
