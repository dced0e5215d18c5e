"""What every feature that writes to the chain through the relay shares: the ledger looked up at each call, the
status of an outbox row for API answers, waking the relay after a commit, and catching up once the ledger is up.

The ledger comes up in the background (it waits for the chain), so a feature may start before it: its writers
enqueue nothing while `ledger` is None, and `sync_when_ledger_ready` enqueues what was made meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

from hub.platform.runtime import PlatformRuntime
from hub.relay.outbox import OutboxEntry


class RelayWriter:
    """Base of a feature's chain writer; subclasses build PreparedCalls from `self.ledger` and `enqueue` them."""

    def __init__(self, runtime: PlatformRuntime) -> None:
        self.runtime = runtime

    @property
    def ledger(self) -> Any | None:
        """The deployed contracts (hub.ledger.contracts.Ledger), or None while the ledger is not up."""
        deployment = self.runtime.extras.get("ledger")
        return deployment.ledger if deployment is not None else None

    def status(self, session: Session, outbox_id: int | None) -> dict[str, Any]:
        """An outbox row as the API shows it: pending / signed / sent / confirmed / failed, with the tx hash."""
        if outbox_id is None:
            return {"status": "off" if self.ledger is None else "not enqueued"}
        entry = session.get(OutboxEntry, outbox_id)
        if entry is None:
            return {"status": "unknown"}
        return {"status": entry.status, "tx_hash": entry.tx_hash, "error": entry.last_error}

    def committed(self) -> None:
        relay = self.runtime.extras.get("relay")
        if relay is not None and hasattr(relay, "wake"):
            relay.wake()  # send now rather than at the relay's next idle tick


def start_chain_sync(
    runtime: PlatformRuntime, key: str, sync: Callable[[], int], log: logging.Logger, what: str
) -> None:
    """Run `sync_when_ledger_ready` in the background, kept in `runtime.extras[key]` for `stop_chain_sync`."""
    runtime.extras[key] = asyncio.create_task(sync_when_ledger_ready(runtime, sync, log, what), name=key)


async def stop_chain_sync(runtime: PlatformRuntime, key: str) -> None:
    task: asyncio.Task | None = runtime.extras.pop(key, None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sync_when_ledger_ready(
    runtime: PlatformRuntime, sync: Callable[[], int], log: logging.Logger, what: str
) -> None:
    """Wait for the ledger, then run `sync` (blocking; returns how many writes it enqueued) once, off the loop."""
    while runtime.extras.get("ledger") is None:
        await asyncio.sleep(1)
    try:
        enqueued = await run_in_threadpool(sync)
    except Exception:  # noqa: BLE001 - a failed sync must not take the service down; the next start retries
        log.exception("enqueuing the chain writes of %s made before the ledger was up failed", what)
        return
    if enqueued:
        log.info("enqueued %d chain write(s) of %s made before the ledger was up", enqueued, what)
