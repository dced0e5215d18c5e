"""One decode step's bookkeeping for the running rows: adjust the step's logits per row (penalties, logit bias),
sample each row's next token, take its logprobs if asked, decide whether the row finished (end of sequence, a stop
string, its token limit, the context end) and stream the token to the request's handle. Knows nothing about
admission, slots or the KV pool."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hub.openlora.detokenize import TextStream
from hub.openlora.logits_processing import process_logits
from hub.openlora.request import GenerationRequest, RequestHandle, StreamEvent
from hub.openlora.sampling import sample_next
from hub.openlora.structured.grammars import new_matcher
from hub.openlora.structured.mask import accept_tokens, mask_logits
from hub.openlora.token_logprobs import token_logprobs


@dataclass
class RunningSequence:
    """A request in the running batch: its device slot, output so far and streaming state."""

    handle: RequestHandle
    slot: int | None
    stream: TextStream
    generator: torch.Generator | None
    submitted_at: float
    output: list[int] = field(default_factory=list)
    first_token_at: float | None = None
    matcher: Any = field(init=False, default=None)  # the request's grammar state (structured output), else None

    def __post_init__(self) -> None:
        grammar = self.req.params.grammar
        self.matcher = new_matcher(grammar) if grammar is not None else None

    @property
    def req(self) -> GenerationRequest:
        return self.handle.request

    @property
    def kv_len(self) -> int:
        """Tokens in the KV cache: the prompt and every output token except the last (not fed yet)."""
        return len(self.req.prompt_ids) + len(self.output) - 1


def advance_sequences(
    seqs: Sequence[RunningSequence],
    logits: torch.Tensor,
    *,
    eos: frozenset[int],
    max_seq_len: int,
    default_generator: torch.Generator,
    on_first_token: Callable[[RunningSequence, float], None],
) -> list[int]:
    """Sample and stream one token for each sequence (row i of `logits` belongs to seqs[i]); return the indexes
    of the sequences that finished."""
    all_params = [s.req.params for s in seqs]
    processed = process_logits(logits, all_params, [s.output for s in seqs])
    matchers = [s.matcher for s in seqs]
    mask_logits(matchers, processed)  # grammar-constrained rows: after logits processing, before sampling
    tokens = sample_next(processed, all_params, [s.generator for s in seqs], default_generator=default_generator)
    chosen = token_logprobs(processed, tokens, all_params)
    accepted = accept_tokens(matchers, tokens)
    now = time.perf_counter()
    finished: list[int] = []
    for i, (seq, tok) in enumerate(zip(seqs, tokens, strict=True)):
        params = seq.req.params
        if params.return_logits:
            seq.handle.logits.append(logits[i].detach().float().cpu().clone())
        seq.output.append(tok)
        if seq.first_token_at is None:
            seq.first_token_at = now
            on_first_token(seq, now)
        reason: str | None = None
        logprobs = None if chosen[i] is None else [chosen[i]]
        if tok in eos and (not params.ignore_eos or seq.matcher is not None):
            reason = "stop"
            text = ""
            logprobs = None if logprobs is None else []  # the end token is not part of the answer OpenAI shows
        else:
            text = seq.stream.add(tok)
            if seq.stream.stopped or not accepted[i]:
                reason = "stop"
        total = len(seq.req.prompt_ids) + len(seq.output)
        if reason is None and (
            (params.max_tokens is not None and len(seq.output) >= params.max_tokens) or total >= max_seq_len
        ):
            reason = "length"
        if reason is not None:
            text += seq.stream.flush()
            finished.append(i)
        seq.handle.push(
            StreamEvent(
                text=text,
                token_ids=[tok],
                logprobs=logprobs,
                finish_reason=reason,
                prompt_tokens=len(seq.req.prompt_ids),
                completion_tokens=len(seq.output),
            )
        )
    return finished
