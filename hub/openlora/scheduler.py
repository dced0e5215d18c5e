"""Continuous (iteration-level) batching on one scheduler thread.

Each iteration: apply cancellations and admin commands; admit waiting requests whose adapter can be put in a
device slot (up to the batch size and a prefill token budget); then run one forward that decodes one token for
every running sequence, whatever adapter each uses, and prefills the admitted prompts (the runner packs both
into one pass over the weights). Finished sequences leave between steps (their KV row is compacted away, their
slot unpinned), so new requests join without waiting for the batch. Adapter loads start when a request is
submitted (disk -> CPU on a prefetch thread); requests whose adapter is still on its way are skipped, so one
cold adapter does not stall everyone behind it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from hub.openlora.adapter_store import AdapterStore, DeviceSlots
from hub.openlora.config import EngineConfig
from hub.openlora.decode_step import RunningSequence, advance_sequences
from hub.openlora.detokenize import TextStream
from hub.openlora.errors import EngineError, EngineOverloadedError, EngineStoppedError
from hub.openlora.metrics import EngineMetrics
from hub.openlora.request import GenerationRequest, RequestHandle, StreamEvent
from hub.openlora.runner import ModelRunner, NewSequences
from hub.openlora.sampling import make_generator
from hub.openlora.slot_assign import SlotAssigner

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        runner: ModelRunner,
        store: AdapterStore,
        slots: DeviceSlots,
        metrics: EngineMetrics,
        config: EngineConfig,
    ) -> None:
        self.runner = runner
        self.store = store
        self.slots = slots
        self.metrics = metrics
        self.config = config
        self._slots_for_requests = SlotAssigner(store, slots, metrics)
        self._cv = threading.Condition()
        self._inbox: collections.deque[tuple[RequestHandle, float]] = collections.deque()
        self._cancels: set[int] = set()
        self._commands: collections.deque[tuple[Callable[[], Any], concurrent.futures.Future]] = collections.deque()
        self._waiting: collections.deque[tuple[RequestHandle, float]] = collections.deque()
        self._queued = 0  # submitted, not yet admitted or ended: what max_queue bounds (guarded by _cv)
        self.running: list[RunningSequence] = []  # index = KV pool row
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._default_gen = torch.Generator(device="cpu")
        self._default_gen.seed()
        self._recent_tokens: collections.deque[tuple[float, int]] = collections.deque()
        self.steps = 0
        self.peak_batch = 0  # most sequences decoded together so far
        self.decode_steps = 0
        self.decode_rows = 0  # sum of decode batch sizes (mean batch = decode_rows / decode_steps)

    # -- client side (any thread) --------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> RequestHandle:
        handle = RequestHandle(request, self.cancel)
        with self._cv:
            if self._stopping:
                raise EngineStoppedError("the engine is shutting down")
            if self._queued >= self.config.max_queue:
                raise EngineOverloadedError(f"the request queue is full ({self.config.max_queue} waiting); retry later")
            self._inbox.append((handle, time.perf_counter()))
            self._queued += 1
            near_head = self._queued <= self._prefetch_depth()
            self._cv.notify()
        if near_head:
            self._prefetch(request.adapter_id)
        return handle

    def cancel(self, request_id: int) -> None:
        with self._cv:
            self._cancels.add(request_id)
            self._cv.notify()

    def notify(self) -> None:
        with self._cv:
            self._cv.notify()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        """Run `fn` on the scheduler thread between steps (the only thread that may touch slots and the KV pool)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                raise EngineStoppedError("the engine is not running")
            self._commands.append((fn, future))
            self._cv.notify()
        return future

    @property
    def waiting_count(self) -> int:
        with self._cv:
            return self._queued

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="openlora-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # -- scheduler thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        with torch.no_grad():
            while True:
                with self._cv:
                    if self._stopping:
                        break
                    if not (self._inbox or self._cancels or self._commands or self._waiting or self.running):
                        self._cv.wait(timeout=0.5)
                    inbox, self._inbox = self._inbox, collections.deque()
                    cancels, self._cancels = self._cancels, set()
                    commands, self._commands = self._commands, collections.deque()
                self._waiting.extend(inbox)
                for fn, future in commands:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(fn())
                        except BaseException as exc:  # hand any error to the caller
                            future.set_exception(exc)
                if cancels:
                    self._apply_cancels(cancels)
                try:
                    did_work = self._step()
                except Exception:  # a bug must not kill the server: fail what was running, keep serving
                    log.exception("scheduler step failed")
                    self._fail_all_running(EngineError("internal error in the engine step; see the server log"))
                    did_work = True
                if not did_work and self._waiting:
                    with self._cv:  # everything waits on adapter loads: sleep until a load finishes
                        if not (self._inbox or self._cancels or self._commands):
                            self._cv.wait(timeout=0.01)
            self._shutdown()

    def _dequeued(self, n: int = 1) -> None:
        with self._cv:
            self._queued -= n

    def _shutdown(self) -> None:
        err = EngineStoppedError("the engine shut down before this request finished")
        with self._cv:
            self._waiting.extend(self._inbox)
            self._inbox.clear()
            self._queued = 0
        for handle, _ in self._waiting:
            handle.push(StreamEvent(finish_reason="error", error=err))
        self._waiting.clear()
        self._fail_all_running(err)

    def _step(self) -> bool:
        t0 = time.perf_counter()
        admitted = self._admit()
        tokens = self._forward(admitted) if (admitted or self.running) else 0
        self.metrics.waiting.set(len(self._waiting))
        self.metrics.running.set(len(self.running))
        if not (admitted or tokens):
            return False
        now = time.perf_counter()
        self.steps += 1
        self.metrics.step_seconds.observe(now - t0)
        self._recent_tokens.append((now, tokens))
        while self._recent_tokens and now - self._recent_tokens[0][0] > 5.0:
            self._recent_tokens.popleft()
        span = max(now - self._recent_tokens[0][0], 1e-3)
        self.metrics.tokens_per_second.set(sum(n for _, n in self._recent_tokens) / span)
        return True

    # -- admission -----------------------------------------------------------------------------------------
    def _admit(self) -> list[RunningSequence]:
        capacity = self.config.max_batch_size - len(self.running)
        if capacity <= 0 or not self._waiting:
            self._prefetch_head()
            return []
        admitted: list[RunningSequence] = []
        kept: list[tuple[RequestHandle, float]] = []
        failed: dict[str, EngineError] = {}
        prompt_tokens = 0
        scan = min(self.config.admission_scan, len(self._waiting))
        for _ in range(scan):
            handle, submitted = self._waiting.popleft()
            if len(admitted) >= capacity:
                kept.append((handle, submitted))
                continue
            req = handle.request
            # Bound the prompt tokens prefilled per iteration, so running sequences keep decoding meanwhile.
            if admitted and prompt_tokens + len(req.prompt_ids) > self.config.max_prefill_tokens:
                kept.append((handle, submitted))
                continue
            slot = self._slots_for_requests.slot_for(req, failed)
            if isinstance(slot, EngineError):  # its adapter failed to load: only its requests fail
                self._fail_handle(handle, slot)
                self._dequeued()
                continue
            if slot is True:  # adapter not ready yet (loading, or every slot pinned)
                kept.append((handle, submitted))
                continue
            if slot is not None:
                self.slots.pin(slot)
            seq = RunningSequence(
                handle=handle,
                slot=slot,
                stream=TextStream(self.runner.tokenizer, req.params.stop),
                generator=make_generator(req.params.seed),
                submitted_at=submitted,
            )
            admitted.append(seq)
            prompt_tokens += len(req.prompt_ids)
        self._waiting.extendleft(reversed(kept))
        if admitted:
            self._dequeued(len(admitted))
        for adapter_id, error in failed.items():
            self._fail_waiting_for(adapter_id, error)
        self._prefetch_head()
        return admitted

    def _prefetch_depth(self) -> int:
        """How many requests at the head of the queue get their adapters loaded ahead of admission."""
        return max(2 * self.slots.num_slots, 8)

    def _prefetch(self, adapter: str | None) -> None:
        # A resident adapter needs no load (a dict read: safe from client threads too).
        if adapter is not None and self.slots.lookup(adapter) is None:
            self.store.prefetch(adapter)

    def _prefetch_head(self) -> None:
        """Start disk -> CPU loads for the adapters of the requests next in line."""
        depth = self._prefetch_depth()
        for i, (handle, _) in enumerate(self._waiting):
            if i >= depth:
                break
            self._prefetch(handle.request.adapter_id)

    def _fail_waiting_for(self, adapter_id: str, error: EngineError) -> None:
        keep: collections.deque[tuple[RequestHandle, float]] = collections.deque()
        for handle, submitted in self._waiting:
            if handle.request.adapter_id == adapter_id:
                self._fail_handle(handle, error)
                self._dequeued()
            else:
                keep.append((handle, submitted))
        self._waiting = keep

    # -- forward passes ------------------------------------------------------------------------------------
    def _forward(self, admitted: list[RunningSequence]) -> int:
        """One forward: a token for every running sequence, and the first token of each admitted one."""
        decoding = list(self.running)
        admitted = sorted(admitted, key=self._prefill_order)
        self.running.extend(admitted)  # admitted rows follow the decoding ones, in this order
        new = NewSequences([s.req.prompt_ids for s in admitted], [s.slot for s in admitted])
        try:
            if decoding:
                logits = self.runner.decode(
                    [s.output[-1] for s in decoding],
                    [s.kv_len for s in decoding],
                    [s.slot for s in decoding],
                    self.slots.ranks,
                    new=new,
                )
            else:
                logits = self.runner.prefill(0, new.prompts, new.slots, self.slots.ranks)
        except Exception:
            log.exception("forward failed")
            self._fail_all_running(EngineError("internal error in the engine step; see the server log"))
            return 0
        self._count_forward(len(decoding), admitted)
        return self._advance(range(len(self.running)), logits)

    def _prefill_order(self, seq: RunningSequence) -> tuple[int, int]:
        """Packed prefill: prompts of one adapter side by side (one LoRA segment each run); padded prefill: similar
        lengths side by side (little padding per chunk)."""
        length = len(seq.req.prompt_ids)
        if self.runner.packed is not None:
            return (-1 if seq.slot is None else seq.slot, length)
        return (length, 0)

    def _count_forward(self, decoding: int, admitted: list[RunningSequence]) -> None:
        self.peak_batch = max(self.peak_batch, len(self.running))
        if decoding:
            self.decode_steps += 1
            self.decode_rows += decoding
            self.metrics.batch_size.labels("decode").observe(decoding)
        if admitted:
            self.metrics.batch_size.labels("prefill").observe(len(admitted))
        for s in admitted:
            self.metrics.prompt_tokens.labels(s.req.model).inc(len(s.req.prompt_ids))

    def _advance(self, rows: range, logits: torch.Tensor) -> int:
        """Sample one token for each of `rows`, stream it, and retire the sequences that finished."""
        seqs = [self.running[r] for r in rows]
        finished = advance_sequences(
            seqs,
            logits,
            eos=self.runner.eos_token_ids,
            max_seq_len=self.runner.max_seq_len,
            default_generator=self._default_gen,
            on_first_token=lambda seq, now: self.metrics.ttft.observe(now - seq.submitted_at),
        )
        for i in finished:
            self._count_finished(seqs[i], "ok")
        self._retire([rows.start + i for i in finished])
        return len(seqs)

    # -- leaving the batch ---------------------------------------------------------------------------------
    def _retire(self, rows: list[int]) -> None:
        """Remove sequences at `rows`, moving the last row into each hole so rows stay 0..n-1."""
        for row in sorted(rows, reverse=True):
            seq = self.running[row]
            if seq.slot is not None:
                self.slots.unpin(seq.slot)
            last = len(self.running) - 1
            if row != last:
                moved = self.running[last]
                self.runner.kv.move_row(last, row, moved.kv_len)
                self.running[row] = moved
            self.running.pop()
        if rows:
            self.metrics.resident_adapters.set(len(self.slots.resident()))
            self.runner.kv.shrink(max((s.kv_len + 1 for s in self.running), default=0))

    def _apply_cancels(self, cancels: set[int]) -> None:
        keep: collections.deque[tuple[RequestHandle, float]] = collections.deque()
        for handle, submitted in self._waiting:
            if handle.request_id in cancels:
                self._finish_handle(handle, StreamEvent(finish_reason="cancelled"), status="cancelled")
                self._dequeued()
            else:
                keep.append((handle, submitted))
        self._waiting = keep
        rows = [i for i, s in enumerate(self.running) if s.handle.request_id in cancels]
        for i in rows:
            seq = self.running[i]
            ev = StreamEvent(
                finish_reason="cancelled", prompt_tokens=len(seq.req.prompt_ids), completion_tokens=len(seq.output)
            )
            self._finish_handle(seq.handle, ev, status="cancelled")
        self._retire(rows)

    def _fail_rows(self, rows: range | list[int], error: EngineError) -> None:
        rows = list(rows)
        for i in rows:
            seq = self.running[i]
            ev = StreamEvent(finish_reason="error", error=error, prompt_tokens=len(seq.req.prompt_ids))
            self._finish_handle(seq.handle, ev, status="error")
        self._retire(rows)

    def _fail_all_running(self, error: EngineError) -> None:
        self._fail_rows(list(range(len(self.running))), error)

    def _fail_handle(self, handle: RequestHandle, error: EngineError) -> None:
        ev = StreamEvent(finish_reason="error", error=error, prompt_tokens=len(handle.request.prompt_ids))
        self._finish_handle(handle, ev, status="error")

    def _finish_handle(self, handle: RequestHandle, event: StreamEvent, *, status: str) -> None:
        handle.push(event)
        self.metrics.requests.labels(handle.request.model, status).inc()

    def _count_finished(self, seq: RunningSequence, status: str) -> None:
        self.metrics.requests.labels(seq.req.model, status).inc()
        self.metrics.generated_tokens.labels(seq.req.model).inc(len(seq.output))
