"""Sampling parameters and next-token selection for a batch: greedy rows by one argmax, sampled rows by
temperature + nucleus (top-p) filtering. A request with a seed draws from its own generator, so its output
does not depend on what else is in the batch. Penalties and logit bias are applied to the logits before this
(`hub.openlora.logits_processing`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hub.openlora.errors import InvalidRequestError

GREEDY_EPS = 1e-5
MAX_TOP_LOGPROBS = 20  # OpenAI's chat limit (its legacy completions allow 5)


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int | None = 16  # None: up to the context length
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False
    presence_penalty: float = 0.0  # OpenAI's: subtracted once from every token already generated
    frequency_penalty: float = 0.0  # subtracted per occurrence of a token already generated
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, added to its logit)
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the k most likely tokens'
    return_logits: bool = False  # keep each step's logits (tests, debugging)
    grammar: Any = None  # a compiled grammar (hub.openlora.structured): every token must keep the output in it

    def validate(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise InvalidRequestError("max_tokens must be at least 1")
        if not 0.0 <= self.temperature <= 2.0:
            raise InvalidRequestError("temperature must be between 0 and 2")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidRequestError("top_p must be in (0, 1]")
        for name, value in (("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)):
            if not -2.0 <= value <= 2.0:
                raise InvalidRequestError(f"{name} must be between -2 and 2", "invalid_value", name)
        if any(not -100.0 <= bias <= 100.0 for _, bias in self.logit_bias):
            raise InvalidRequestError("logit_bias values must be between -100 and 100", "invalid_value", "logit_bias")
        if self.logprobs is not None and not 0 <= self.logprobs <= MAX_TOP_LOGPROBS:
            raise InvalidRequestError(
                f"top logprobs must be between 0 and {MAX_TOP_LOGPROBS}", "invalid_value", "logprobs"
            )
        if len(self.stop) > 4 or any(not isinstance(s, str) or not s for s in self.stop):
            raise InvalidRequestError("stop must be up to 4 non-empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_EPS


def make_generator(seed: int | None) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g


def _top_p_probs(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Probabilities after temperature scaling and nucleus filtering, for rows of logits [m, V]."""
    probs = torch.softmax(logits / temperature[:, None], dim=-1)
    if bool((top_p < 1.0).any()):
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(dim=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        drop = (cum - sorted_p) >= top_p[:, None]
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next(
    logits: torch.Tensor,
    params: list[SamplingParams],
    generators: list[torch.Generator | None],
    default_generator: torch.Generator | None = None,
) -> list[int]:
    """One next token per row of `logits` [n, V] (float32, any device)."""
    n = logits.shape[0]
    out = logits.argmax(dim=-1).tolist()
    sampled = [i for i in range(n) if not params[i].greedy]
    if not sampled:
        return out
    rows = torch.tensor(sampled, device=logits.device)
    temp = torch.tensor([params[i].temperature for i in sampled], device=logits.device)
    top_p = torch.tensor([params[i].top_p for i in sampled], device=logits.device)
    probs = _top_p_probs(logits.index_select(0, rows), temp, top_p).cpu()
    unseeded = [k for k, i in enumerate(sampled) if generators[i] is None]
    if unseeded:
        draws = torch.multinomial(probs[unseeded], 1, generator=default_generator).view(-1).tolist()
        for k, tok in zip(unseeded, draws, strict=True):
            out[sampled[k]] = tok
    for k, i in enumerate(sampled):
        g = generators[i]
        if g is not None:  # per-request generator: reproducible whatever else is in the batch
            out[i] = int(torch.multinomial(probs[k], 1, generator=g))
    return out
