"""The one prompt rule: chat-template rendering and the one prompt-cut rule.

Training rows, prediction prompts and served requests are all rendered by :func:`render_prompt` and cut by
:func:`fit_prompt`, so a model sees at inference exactly what it saw in training. Rendering uses the
tokenizer's chat template when it has one, and a plain ``### Input / ### Output`` template otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Message = dict[str, str]


def fit_prompt(ids: list[int], budget: int) -> list[int]:
    """``ids`` cut to ``budget`` tokens from the middle: the template head (system turn, instruction: up to
    32 tokens) and the tail (the text's end and the assistant marker) are kept. Training rows and
    prediction prompts are cut by this one rule, so a model sees at inference what it saw in training."""
    if len(ids) <= budget:
        return ids
    head = min(32, max(budget, 0) // 4)
    return ids[:head] + ids[len(ids) - (budget - head) :]


def render_prompt(tokenizer: Any, messages: list[Message]) -> str:
    """The prompt string up to where the assistant's answer starts."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(m["content"] + "\n\n")
        elif m["role"] == "user":
            parts.append(f"### Input:\n{m['content']}\n\n### Output:\n")
        else:
            parts.append(f"{m['content']}{tokenizer.eos_token or ''}\n\n")
    return "".join(parts)


def prompt_token_ids(
    tokenizer: Any, task: Any, example: dict[str, Any], shots: Any, max_tokens: int | None = None
) -> list[int]:
    """The rendered prompt's token ids, tokenised and (over ``max_tokens``, by default the task's prompt
    budget: the training cut) cut as in training."""
    from slmforge.prediction.shots import shots_for

    prompt = render_prompt(tokenizer, task.messages(example, shots_for(shots, example)))
    budget = max_tokens if max_tokens is not None else task.max_prompt_tokens
    return fit_prompt(tokenizer(prompt, add_special_tokens=False)["input_ids"], budget)


def count_truncated(
    tokenizer: Any, task: Any, examples: Sequence[dict[str, Any]], shots: Any, max_tokens: int
) -> int:
    """How many of ``examples`` have a prompt longer than ``max_tokens`` (cut by :func:`fit_prompt`)."""
    from slmforge.prediction.shots import shots_for

    return sum(
        len(
            tokenizer(
                render_prompt(tokenizer, task.messages(ex, shots_for(shots, ex))), add_special_tokens=False
            )["input_ids"]
        )
        > max_tokens
        for ex in examples
    )
