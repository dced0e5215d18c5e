"""The grammar stage of a decode step: before sampling, every constrained row's logits lose the tokens its grammar
forbids; after sampling, each row's matcher accepts the token drawn.

Order in a step: logits processing (penalties, logit bias) -> this mask -> sampling. Bitmasks of all constrained
rows are filled by one xgrammar batch call into one int32 [rows, V/32] tensor and applied as one tensor op on the
logits' device; unconstrained rows are not touched, so they sample exactly as without this stage.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import torch
import xgrammar as xgr

_BITS: dict[torch.device, torch.Tensor] = {}
_per_thread = threading.local()  # one batch matcher per scheduler thread (engines in one process do not share)


def _bits(device: torch.device) -> torch.Tensor:
    found = _BITS.get(device)
    if found is None:
        found = _BITS[device] = torch.arange(32, dtype=torch.int32, device=device)
    return found


def apply_bitmask(logits: torch.Tensor, rows: list[int], bitmask: torch.Tensor) -> None:
    """Set logits[rows[k], t] to -inf wherever bit t of bitmask[k] is 0 (tokens past the mask's width stay allowed
    only if the mask says so: the mask covers the model's whole vocabulary)."""
    device = logits.device
    mask = bitmask.to(device, non_blocking=True)
    allowed = ((mask.unsqueeze(-1) >> _bits(device)) & 1).bool().flatten(1)[:, : logits.shape[1]]
    index = torch.tensor(rows, device=device)
    picked = logits.index_select(0, index).masked_fill(~allowed, float("-inf"))
    logits.index_copy_(0, index, picked)


def mask_logits(matchers: Sequence[Any | None], logits: torch.Tensor) -> None:
    """Row i of `logits` [n, V] belongs to matchers[i] (None: unconstrained). In place."""
    rows = [i for i, m in enumerate(matchers) if m is not None and not m.is_terminated()]
    if not rows:
        return
    batch = getattr(_per_thread, "matcher", None)
    if batch is None:
        batch = _per_thread.matcher = xgr.BatchGrammarMatcher(max_threads=1)
    bitmask = xgr.allocate_token_bitmask(len(rows), logits.shape[1])
    batch.batch_fill_next_token_bitmask([matchers[i] for i in rows], bitmask)
    apply_bitmask(logits, rows, bitmask)


def accept_tokens(matchers: Sequence[Any | None], tokens: Sequence[int]) -> list[bool]:
    """Advance each constrained row's matcher with its sampled token; False where the grammar refused it (cannot
    happen for a token the mask allowed)."""
    return [
        m is None or m.is_terminated() or bool(m.accept_token(tok)) for m, tok in zip(matchers, tokens, strict=True)
    ]
