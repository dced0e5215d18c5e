"""Calibrating an adapter's null threshold: answers that owe nothing to its datanet, then `calibrate_null`.

The samples are greedy answers to prompts off any datanet's topic (`null_prompts.json`: general knowledge,
arithmetic, code, small talk), generated twice — by the base model (adapter disabled: answers that cannot owe
anything to the training rows) and by the adapter itself (what the adapter really says off-topic, so the null has
the gradient statistics of the model being attributed); the span of an adapter answer that recites the datanet is
evidence, not a chance match, and does not set the span bar (`calibrate_null`). 100 prompts × 2 = 200 answers.

This takes minutes on a CPU (a generation and a backward pass per answer): the platform runs it when a model is
published or, in OpenLoRA, in the background when an adapter is first asked — never on a request's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from openledger_sdk.modelfactory.attribution_null import ALPHA, NullThreshold, calibrate_null
from openledger_sdk.modelfactory.attribution_query import Attributor

PROMPTS_FILE = Path(__file__).with_name("null_prompts.json")
ANSWER_TOKENS = 32  # tokens generated per calibration answer

__all__ = ["ANSWER_TOKENS", "calibrate_adapter", "null_answers", "null_prompts"]


def null_prompts() -> list[str]:
    """The calibration prompts (never the held-out test set in bench/offtopic_prompts.json)."""
    return [item["prompt"] for item in json.loads(PROMPTS_FILE.read_text(encoding="utf-8"))["prompts"]]


def chat_prompt_ids(tokenizer: Any, prompt: str) -> list[int]:
    """A user prompt under the tokenizer's chat template (plain text when it has none), ready for the answer."""
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        ids = out["input_ids"] if hasattr(out, "keys") else out  # transformers 5 returns a BatchEncoding
        return [int(t) for t in ids]
    return [int(t) for t in tokenizer(prompt)["input_ids"]]


def _greedy(model: Any, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt_ids], device=device),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long, device=device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    answer = [int(t) for t in out[0, len(prompt_ids) :].tolist()]
    eos = tokenizer.eos_token_id
    return answer[: answer.index(eos)] if eos in answer else answer


def null_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | None = None,
    *,
    max_new_tokens: int = ANSWER_TOKENS,
    who: Sequence[str] = ("base", "adapter"),
    prompt_ids: Callable[[Any, str], list[int]] = chat_prompt_ids,
) -> list[tuple[list[int], list[int], str]]:
    """(prompt ids, answer ids, "base" or "adapter") of the base model's and the adapter's greedy answers; empty
    answers are dropped.

    `model` is the PEFT model with the adapter active (`disable_adapter()` gives the base model's answers)."""
    answers = []
    for prompt in prompts if prompts is not None else null_prompts():
        ids = prompt_ids(tokenizer, prompt)
        for kind in who:
            if kind == "base":
                with model.disable_adapter():
                    answer = _greedy(model, tokenizer, ids, max_new_tokens)
            else:
                answer = _greedy(model, tokenizer, ids, max_new_tokens)
            if answer:
                answers.append((ids, answer, kind))
    return answers


def calibrate_adapter(
    attributor: Attributor,
    tokenizer: Any,
    *,
    model: Any = None,
    prompts: Sequence[str] | None = None,
    alpha: float = ALPHA,
    max_new_tokens: int = ANSWER_TOKENS,
    save: bool = True,
) -> NullThreshold:
    """Generate the null answers with the attributor's model and calibrate (and save) its null threshold."""
    model = model if model is not None else attributor.model
    if model is None:
        raise ValueError("calibration needs the PEFT model with this adapter active")
    started = time.perf_counter()
    answers = null_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
    if not answers:
        raise ValueError("neither the base model nor the adapter answered any calibration prompt")
    generated = time.perf_counter()
    pairs = [(ids, answer) for ids, answer, _ in answers]
    from_adapter = [kind == "adapter" for _, _, kind in answers]
    threshold = calibrate_null(attributor, pairs, alpha=alpha, model=model, save=False, from_adapter=from_adapter)
    observed = {
        **threshold.observed,
        "seconds": {"generate": round(generated - started, 2), "score": round(time.perf_counter() - generated, 2)},
        "answer_tokens": max_new_tokens,
    }
    threshold = replace(threshold, observed=observed)
    attributor.threshold = threshold
    if save and attributor.directory is not None:
        threshold.save(attributor.directory)
    return threshold
