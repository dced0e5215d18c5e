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


def generated_ids(outputs: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's generated token ids, right-padded into one [rows, longest] matrix, and the mask of real entries.
    Padding repeats the row's first token, so writing per-token results through it writes a real token's value."""
    ids = pad_sequence(
        [torch.as_tensor(list(out), dtype=torch.long) for out in outputs], batch_first=True, padding_value=-1
    )
    real = ids >= 0
    return torch.where(real, ids, ids[:, :1]).to(device), real.to(device)


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
        # Only the tokens already generated are penalised: work on [rows, answer length], never on [rows, vocab].
        rows = torch.tensor(penalised, device=device)[:, None]
        ids, real = generated_ids([outputs[i] for i in penalised], device)
        counts = torch.zeros(len(penalised), logits.shape[1], device=device)
        counts = counts.scatter_add_(1, ids, real.to(counts.dtype)).gather(1, ids)  # each entry's token count
        frequency = torch.tensor([params[i].frequency_penalty for i in penalised], device=device)
        presence = torch.tensor([params[i].presence_penalty for i in penalised], device=device)
        penalty = counts * frequency[:, None] + presence[:, None]  # every listed token occurs: count >= 1
        # A token listed twice is written twice with the same value (both computed from the unpenalised logit).
        logits[rows, ids] = logits[rows, ids] - penalty
    if biased:
        rows_of = [i for i in biased for _ in params[i].logit_bias]
        tokens = [tok for i in biased for tok, _ in params[i].logit_bias]
        values = [bias for i in biased for _, bias in params[i].logit_bias]
        index = (torch.tensor(rows_of, device=device), torch.tensor(tokens, device=device))
        logits.index_put_(index, torch.tensor(values, dtype=logits.dtype, device=device), accumulate=True)
    return logits
