"""Held-out evaluation of a fine-tuned adapter: token-weighted response loss before and after training."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from openledger_sdk.modelfactory.data import Example, collate


def mean_response_loss(
    model: torch.nn.Module,
    examples: Sequence[Example],
    *,
    pad_id: int,
    device: Any,
    batch_size: int = 8,
    autocast: Callable[[], Any] | None = None,
) -> tuple[float, int]:
    """Token-weighted mean response loss over `examples` and the number of tokens it covers."""
    from contextlib import nullcontext

    from openledger_sdk.modelfactory.attribution_index import example_losses

    total, tokens = 0.0, 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(examples), batch_size):
                chunk = examples[i : i + batch_size]
                batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
                with (autocast or nullcontext)():
                    losses = example_losses(model, batch)
                counts = [len(ex.response_ids) for ex in chunk]
                total += float((losses.cpu() * torch.tensor(counts, dtype=torch.float32)).sum())
                tokens += sum(counts)
    finally:
        model.train(was_training)
    return total / max(tokens, 1), tokens


def eval_before_after(
    model: Any, examples: Sequence[Example], *, pad_id: int, device: Any, autocast: Any = None
) -> dict[str, Any]:
    """Held-out loss and perplexity of the base model (adapter disabled) and of the fine-tuned model."""
    with model.disable_adapter():
        before, tokens = mean_response_loss(model, examples, pad_id=pad_id, device=device, autocast=autocast)
    after, _ = mean_response_loss(model, examples, pad_id=pad_id, device=device, autocast=autocast)
    return {
        "rows": len(examples),
        "tokens": tokens,
        "loss_before": round(before, 6),
        "loss_after": round(after, 6),
        "perplexity_before": round(math.exp(min(before, 50.0)), 4),
        "perplexity_after": round(math.exp(min(after, 50.0)), 4),
    }
