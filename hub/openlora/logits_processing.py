"""The logits stage before sampling: OpenAI's presence / frequency penalties and logit bias, per row of a mixed
batch (every row its own settings), with a few tensor ops for the whole batch (no Python loop over the vocabulary).

OpenAI's definition, for token j with count c[j] among the tokens generated so far (the prompt does not count):
    logit[j] -= c[j] * frequency_penalty + (c[j] > 0) * presence_penalty
and `logit_bias` adds its value to the named tokens' logits. Temperature and top-p come after, in `sample_next`;
the logprobs a response reports are taken from these processed logits (see `hub.openlora.token_logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.utils.rnn import pad_sequence

from hub.openlora.sampling import SamplingParams


def needs_processing(params: SamplingParams) -> bool:
    return bool(params.presence_penalty or params.frequency_penalty or params.logit_bias)


def token_counts(outputs: Sequence[Sequence[int]], vocab_size: int, device: torch.device) -> torch.Tensor:
    """[len(outputs), vocab_size] float counts of each token in each row's output (one scatter for the batch)."""
    # Padding points at an extra column past the vocabulary, dropped afterwards.
    rows = [torch.as_tensor(list(out) or [vocab_size], dtype=torch.long) for out in outputs]
    ids = pad_sequence(rows, batch_first=True, padding_value=vocab_size).to(device)
    counts = torch.zeros(len(outputs), vocab_size + 1, device=device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=counts.dtype))
    return counts[:, :vocab_size]


def process_logits(
    logits: torch.Tensor, params: Sequence[SamplingParams], outputs: Sequence[Sequence[int]]
) -> torch.Tensor:
    """The logits [n, V] of one step with each row's penalties (over outputs[i]) and logit bias applied. Returns
    `logits` itself when no row asks for either, else a new tensor (the model's logits stay untouched)."""
    penalised = [i for i, p in enumerate(params) if (p.presence_penalty or p.frequency_penalty) and outputs[i]]
    biased = [i for i, p in enumerate(params) if p.logit_bias]
    if not (penalised or biased):
        return logits
    logits = logits.clone()
    device = logits.device
    if penalised:
        rows = torch.tensor(penalised, device=device)
        counts = token_counts([outputs[i] for i in penalised], logits.shape[1], device)
        frequency = torch.tensor([params[i].frequency_penalty for i in penalised], device=device)
        presence = torch.tensor([params[i].presence_penalty for i in penalised], device=device)
        penalty = counts * frequency[:, None] + (counts > 0).to(counts.dtype) * presence[:, None]
        logits.index_put_((rows,), logits.index_select(0, rows) - penalty)
    if biased:
        rows_of = [i for i in biased for _ in params[i].logit_bias]
        tokens = [tok for i in biased for tok, _ in params[i].logit_bias]
        values = [bias for i in biased for _, bias in params[i].logit_bias]
        index = (torch.tensor(rows_of, device=device), torch.tensor(tokens, device=device))
        logits.index_put_(index, torch.tensor(values, dtype=logits.dtype, device=device), accumulate=True)
    return logits
