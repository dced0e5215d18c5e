"""A generation request as the client sees it: the handle to cancel it and read its output, sync or async.

The scheduler thread pushes `StreamEvent`s; a handle created inside an asyncio loop receives them on an
asyncio.Queue via `call_soon_threadsafe` (no thread per waiting client), otherwise on a queue.Queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import torch

from hub.openlora.errors import EngineError, RequestCancelledError
from hub.openlora.sampling import SamplingParams
from hub.openlora.token_logprobs import TokenLogprob

_ids = itertools.count(1)


@dataclass
class StreamEvent:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] | None = None  # if the request asked for logprobs: one per answer token
    finish_reason: str | None = None  # "stop", "length", "cancelled", "error" on the last event
    error: EngineError | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Completion:
    request_id: int
    model: str
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    logits: list[torch.Tensor] | None = None  # per generated token, if SamplingParams.return_logits
    logprobs: list[TokenLogprob] | None = None  # per answer token (not the end token), if SamplingParams.logprobs


@dataclass
class GenerationRequest:
    model: str  # adapter id, or the base model's id
    adapter_id: str | None  # None: base model
    prompt_ids: list[int]
    params: SamplingParams
    request_id: int = field(default_factory=lambda: next(_ids))


class RequestHandle:
    def __init__(self, request: GenerationRequest, cancel_cb: Callable[[int], None]) -> None:
        self.request = request
        self._cancel_cb = cancel_cb
        self._done = threading.Event()
        self._cancelled = False
        self.logits: list[torch.Tensor] = []
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None  # perf_counter times, for latency metrics and benchmarks
        self.finished_at: float | None = None
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._aq: asyncio.Queue[StreamEvent] | None = asyncio.Queue() if self._loop else None
        self._q: queue.Queue[StreamEvent] | None = None if self._loop else queue.Queue()

    @property
    def request_id(self) -> int:
        return self.request.request_id

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- called by the scheduler thread --------------------------------------------------------------------
    def push(self, event: StreamEvent) -> None:
        if self.first_token_at is None and event.token_ids:
            self.first_token_at = time.perf_counter()
        if event.finish_reason is not None:
            self.finished_at = time.perf_counter()
            self._done.set()
        if self._loop is not None and self._aq is not None:
            # RuntimeError: the client's loop is closed, nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._aq.put_nowait, event)
        elif self._q is not None:
            self._q.put(event)

    # -- called by the client --------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop generating: the scheduler frees the sequence's KV row and its adapter slot pin."""
        if not self._done.is_set() and not self._cancelled:
            self._cancelled = True
            self._cancel_cb(self.request_id)

    def __iter__(self) -> Iterator[StreamEvent]:
        if self._q is None:
            raise RuntimeError("this handle was created inside an event loop: use `async for`")
        while True:
            event = self._q.get()
            yield event
            if event.finish_reason is not None:
                return

    async def __aiter__(self) -> AsyncIterator[StreamEvent]:
        if self._aq is None:
            raise RuntimeError("this handle was created outside an event loop: iterate it synchronously")
        while True:
            event = await self._aq.get()
            yield event
            if event.finish_reason is not None:
                return

    def _collect(self, events: list[StreamEvent]) -> Completion:
        last = events[-1]
        if last.error is not None:
            raise last.error
        if last.finish_reason == "cancelled":
            raise RequestCancelledError("the request was cancelled")
        return Completion(
            request_id=self.request_id,
            model=self.request.model,
            text="".join(e.text for e in events),
            token_ids=[t for e in events for t in e.token_ids],
            finish_reason=last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens,
            completion_tokens=last.completion_tokens,
            logits=self.logits if self.request.params.return_logits else None,
            logprobs=None if self.request.params.logprobs is None else [lp for e in events for lp in e.logprobs or ()],
        )

    def result(self) -> Completion:
        """Block until the request ends; raise its error if it failed."""
        return self._collect(list(self))

    async def aresult(self) -> Completion:
        return self._collect([e async for e in self])
