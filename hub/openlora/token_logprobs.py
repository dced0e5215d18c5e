"""Log probabilities of the chosen tokens and of the most likely alternatives, for the rows of a step that ask for
them. They are taken from the processed logits (after penalties and logit bias, before temperature and top-p):
the distribution the model and the request's own adjustments give, as OpenAI reports it; a token excluded from
sampling (a constrained-decoding mask) has -inf, written as -9999.0 in responses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from hub.openlora.sampling import SamplingParams


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)  # (token id, logprob), most likely first


def token_logprobs(
    logits: torch.Tensor, tokens: Sequence[int], params: Sequence[SamplingParams]
) -> list[TokenLogprob | None]:
    """For each row i whose params ask for logprobs: tokens[i]'s logprob under log_softmax(logits[i]) and the
    params[i].logprobs most likely tokens; None for the other rows. One log_softmax and one topk for all rows."""
    wanted = [i for i, p in enumerate(params) if p.logprobs is not None]
    out: list[TokenLogprob | None] = [None] * len(tokens)
    if not wanted:
        return out
    device = logits.device
    logp = torch.log_softmax(logits.index_select(0, torch.tensor(wanted, device=device)).float(), dim=-1)
    chosen_ids = torch.tensor([tokens[i] for i in wanted], device=device)
    chosen = logp.gather(1, chosen_ids[:, None]).squeeze(1).tolist()
    k = min(max(params[i].logprobs or 0 for i in wanted), logp.shape[1])
    top_values, top_ids = logp.topk(k, dim=-1) if k else (logp[:, :0], logp[:, :0].long())
    top_values, top_ids = top_values.tolist(), top_ids.tolist()
    for row, i in enumerate(wanted):
        n = params[i].logprobs or 0
        top = list(zip(top_ids[row][:n], top_values[row][:n], strict=True))
        out[i] = TokenLogprob(tokens[i], chosen[row], top)
    return out
