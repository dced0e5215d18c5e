"""How surprising each token of an answer is to the base model (adapter off): how specific a matched span is.

A span of the answer that the datanet holds is evidence only when it is specific: a name or a value the base model
would not have written by itself ("the woolen glacier" after "The object belongs to"), not a phrase any model writes
("the square root of 81" after a question about it). Letter counts of multi-token words (`span_evidence`) only
approximate that: they miss a value made of two everyday words and a 7-letter invented name. The base model's own
surprisal, -log p(token | everything before it) with the adapter switched off, measures it directly, in context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch

__all__ = ["token_surprisal"]


def token_surprisal(
    model: Any,
    prompt_ids: Sequence[int],
    output_ids: Sequence[int],
    autocast: Callable[[], AbstractContextManager] | None = None,
) -> np.ndarray | None:
    """Nats per output token under the base model, or None when `model` cannot switch its adapter off (not PEFT).

    One forward pass without gradients, under `autocast` when given (a bf16 index's model keeps its frozen weights
    in bf16). With no prompt, the first token has no context and counts 0."""
    disable = getattr(model, "disable_adapter", None)
    if disable is None or not output_ids:
        return None
    prompt, output = [int(t) for t in prompt_ids], [int(t) for t in output_ids]
    device = next(model.parameters()).device
    ids = torch.tensor([prompt + output], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), disable(), (autocast or nullcontext)():
            logits = model(input_ids=ids).logits[0].float()
    finally:
        model.train(was_training)
    first = max(len(prompt) - 1, 0)  # the logits that predict the first output token (or the second, no prompt)
    predicted = torch.log_softmax(logits[first : len(prompt) + len(output) - 1], dim=-1)
    targets = torch.tensor(output[len(output) - predicted.shape[0] :], device=device)
    nats = -predicted.gather(1, targets[:, None])[:, 0]
    out = np.zeros(len(output), dtype=np.float64)
    out[len(output) - len(nats) :] = nats.cpu().numpy()
    return out
