"""The OpenAI-compatible server, over real HTTP on loopback with the tiny model: the completion matches a
local ``generate`` token for token, usage matches the tokenizer, logprobs match the model, faults fire in
order, and the Hydra entry point builds a working server."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
import torch

from slmforge.modeling.loading import LoadedModel, ModelSpec, load_model
from slmforge.prompting import render_prompt
from slmforge.serving import start_server

MESSAGES = [
    {"role": "system", "content": "You sort support tickets."},
    {"role": "user", "content": "My invoice is wrong, please fix the amount."},
]


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model(ModelSpec(name="tiny", source="tiny"))


def _http(url: str, body: dict[str, Any] | bytes | None = None, headers: dict[str, str] | None = None):
    """(status, headers, body bytes) without any client library in between."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_completion_matches_local_generate_usage_and_logprobs(tiny: LoadedModel) -> None:
    tok = tiny.tokenizer
    with start_server(tiny.model, tok, model_name="tiny") as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True
        )

    # The reference: the same prompt through the tokenizer and a greedy generate in-process.
    prompt_ids = tok(render_prompt(tok, MESSAGES), add_special_tokens=False)["input_ids"]
    assert (
        prompt_ids
        == tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=True)[
            "input_ids"
        ]
    )
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = tiny.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=6,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tok.pad_token_id,
        )
    new = out.sequences[0, len(prompt_ids) :].tolist()
    ref_lp = [torch.log_softmax(step[0], -1)[t].item() for step, t in zip(out.logits, new, strict=True)]

    assert reply.object == "chat.completion" and reply.model == "tiny" and reply.id.startswith("chatcmpl-")
    assert reply.created > 0
    choice = reply.choices[0]
    assert len(new) == 6 and tok.eos_token_id not in new  # the random model never stops by itself here
    assert choice.message.role == "assistant"
    assert choice.message.content == tok.decode(new)
    assert choice.finish_reason == "length"
    assert reply.usage.prompt_tokens == len(prompt_ids)
    assert reply.usage.completion_tokens == 6
    assert reply.usage.total_tokens == len(prompt_ids) + 6
    lps = choice.logprobs.content
    assert len(lps) == reply.usage.completion_tokens
    assert [t.token for t in lps] == [tok.decode([i]) for i in new]
    assert [t.logprob for t in lps] == pytest.approx(ref_lp, abs=1e-4)
    assert all(t.logprob <= 0 and t.top_logprobs == [] for t in lps)
    assert math.exp(sum(t.logprob for t in lps)) < 1


def test_no_logprobs_unless_asked_and_stop_strings_cut_the_text(tiny: LoadedModel) -> None:
    with start_server(tiny.model, tiny.tokenizer, model_name="tiny") as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        plain = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6)
        assert plain.choices[0].logprobs is None
        full = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=6, logprobs=True)
        tokens = [t.token for t in full.choices[0].logprobs.content]
        assert "".join(tokens) == full.choices[0].message.content == plain.choices[0].message.content
        # Stop on the text of the last generated token: generation ends on the first token whose text
        # completes it, the stop string is not returned (OpenAI semantics), and usage still counts that token.
        stop = tokens[-1]
        cut = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=6, stop=[stop], logprobs=True
        )
    text = full.choices[0].message.content
    n_until_stop = next(i + 1 for i in range(len(tokens)) if stop in "".join(tokens[: i + 1]))
    c = cut.choices[0]
    assert c.finish_reason == "stop"
    assert c.message.content == text[: text.find(stop)]
    assert cut.usage.completion_tokens == len(c.logprobs.content) == n_until_stop


def test_routes_errors_and_stats(tiny: LoadedModel) -> None:
    with start_server(tiny.model, tiny.tokenizer, model_name="tiny") as server:
        assert _http(server.root + "/health")[0] == 200
        status, _, body = _http(server.url + "/models")
        assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["tiny"]
        assert _http(server.root + "/nope")[0] == 404

        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.NotFoundError, match="serves 'tiny'"):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2)
        assert _http(server.url + "/chat/completions", b"{not json")[0] == 400
        assert _http(server.url + "/chat/completions", {"model": "tiny", "messages": []})[0] == 400
        too_long = {
            "model": "tiny",
            "messages": MESSAGES,
            "max_tokens": 5000,
        }  # the tiny model's context: 2048
        status, _, body = _http(server.url + "/chat/completions", too_long)
        assert status == 400 and "context of 2048" in json.loads(body)["error"]["message"]
        sampled = client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=3, temperature=1.0
        )
        assert sampled.usage.completion_tokens == 3
        status, _, body = _http(
            server.url + "/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
        )
        assert status == 200 and json.loads(body)["usage"]["completion_tokens"] == 2

        status, _, body = _http(server.root + "/stats")
    stats = json.loads(body)
    # Only chat completions are counted; health/models/stats polling is not.
    assert stats["requests"] == 6
    assert stats["by_status"] == {"404": 1, "400": 3, "200": 2}
    assert stats["in_flight"] == 0 and stats["max_in_flight"] == 1
    assert server.stats() == stats


def test_faults_fire_in_order(tiny: LoadedModel) -> None:
    req = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
    with start_server(
        tiny.model,
        tiny.tokenizer,
        model_name="tiny",
        fail_first_n=2,
        fail_status=503,
        retry_after_s=1.5,
        malformed_first_n=2,
    ) as server:
        url = server.url + "/chat/completions"
        answers = [_http(url, req) for _ in range(5)]
    for status, headers, body in answers[:2]:
        assert status == 503 and headers["Retry-After"] == "1.5"
        assert json.loads(body)["error"]["type"] == "fault_injected"
    assert answers[2][0] == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(answers[2][2])
    assert answers[3][0] == 200 and json.loads(answers[3][2])["choices"] == "not a list"
    assert answers[4][0] == 200 and json.loads(answers[4][2])["choices"][0]["message"]["content"]
    assert server.stats()["by_status"] == {"503": 2, "200": 3}


def test_api_key_is_enforced_when_set(tiny: LoadedModel) -> None:
    with start_server(tiny.model, tiny.tokenizer, model_name="tiny", api_key="sekrit") as server:
        ok = openai.OpenAI(base_url=server.url, api_key="sekrit", max_retries=0)
        assert (
            ok.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1).usage.completion_tokens
            == 1
        )
        bad = openai.OpenAI(base_url=server.url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)


def test_unknown_fault_option_is_refused(tiny: LoadedModel) -> None:
    with pytest.raises(TypeError, match="fail_frist_n"):
        start_server(tiny.model, tiny.tokenizer, fail_frist_n=1)


def test_serve_entry_point_config_builds_a_server() -> None:
    from hydra import compose, initialize_config_dir

    from slmforge.cli.serve import build_server
    from slmforge.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("serve", overrides=["model=tiny", "port=0", "faults.fail_first_n=1"])
    assert cfg.host == "127.0.0.1" and cfg.served_name == "tiny" and cfg.adapter_path is None
    with build_server(cfg) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1)
        assert client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=1).choices
