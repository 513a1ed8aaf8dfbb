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


def _ids_and_budget(
    tokenizer: Any, task: Any, example: dict[str, Any], shots: Any, max_tokens: int | None
) -> tuple[list[int], int]:
    """The rendered prompt's token ids and the budget they are cut to.

    The default budget is the task's (the training cut) for the example's own prompt, with the shots'
    tokens on top: shots are demonstrations the fine-tuned model never saw, and cutting them (with the
    middle cut: the label list and instruction too) to fit a budget sized for zero-shot rows would turn a
    k-shot baseline into a strawman. An explicit ``max_tokens`` is a hard cap on the whole prompt.
    """
    from slmforge.prediction.shots import shots_for

    turns = shots_for(shots, example)
    ids = tokenizer(render_prompt(tokenizer, task.messages(example, turns)), add_special_tokens=False)[
        "input_ids"
    ]
    if max_tokens is not None:
        return ids, max_tokens
    budget = task.max_prompt_tokens
    if turns:
        bare = tokenizer(render_prompt(tokenizer, task.messages(example, [])), add_special_tokens=False)
        budget += max(0, len(ids) - len(bare["input_ids"]))
    return ids, budget


def prompt_token_ids(
    tokenizer: Any, task: Any, example: dict[str, Any], shots: Any, max_tokens: int | None = None
) -> list[int]:
    """The rendered prompt's token ids, tokenised and cut as in training when over budget (by default the
    task's prompt budget plus the shots' tokens: :func:`_ids_and_budget`)."""
    ids, budget = _ids_and_budget(tokenizer, task, example, shots, max_tokens)
    return fit_prompt(ids, budget)


def count_truncated(
    tokenizer: Any, task: Any, examples: Sequence[dict[str, Any]], shots: Any, max_tokens: int | None = None
) -> int:
    """How many of ``examples`` have a prompt over its budget (cut by :func:`fit_prompt`), by the rule
    :func:`prompt_token_ids` cuts with."""
    cut = 0
    for ex in examples:
        ids, budget = _ids_and_budget(tokenizer, task, ex, shots, max_tokens)
        cut += len(ids) > budget
    return cut
