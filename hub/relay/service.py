"""The relay: one worker thread per signer that has outbox rows, each behind a lease (hub.relay.lease: a PostgreSQL
advisory lock, or a file lock on SQLite) so that only one process (a platform replica or `python -m hub.relay`)
relays a given signer on a given chain at a time; a standby takes over when the leader dies."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.ledger.deploy import redact_url
from hub.relay.lease import Lease, signer_lease
from hub.relay.outbox import UNFINISHED, OutboxEntry, status_counts
from hub.relay.worker import Failpoints, RelayConfig, SignerWorker, WorkerStatus, relay_web3

log = logging.getLogger("hub.relay")

# Gives the key of a signer name ("operator", "user:alice"), or None when this process has none for it.
SignerResolver = Callable[[str], LocalAccount | None]


def describe_error(err: BaseException, rpc_url: str) -> str:
    """One line for the status: connection problems name the (redacted) endpoint, the rest their own message."""
    name = type(err).__name__
    if "Connection" in name or "Timeout" in name or isinstance(err, OSError):
        return f"cannot reach the chain's JSON-RPC at {redact_url(rpc_url)} ({name}); retrying"
    return f"{name}: {err}"


class RelayService:
    """Starts a worker per signer with unfinished rows and keeps them running until `stop()`."""

    def __init__(
        self,
        engine: Engine,
        rpc_url: str,
        chain_id: int,
        resolve_signer: SignerResolver,
        lock_dir: Path,
        config: RelayConfig | None = None,
        failpoints: Failpoints | None = None,
    ) -> None:
        self.engine = engine
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.resolve_signer = resolve_signer
        self.lock_dir = lock_dir
        self.config = config or RelayConfig()
        self.failpoints = failpoints or Failpoints()
        self.workers: dict[str, WorkerStatus] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._active: dict[str, SignerWorker] = {}
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._supervisor: threading.Thread | None = None

    # Life ------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Run in background threads (the platform service)."""
        self._supervisor = threading.Thread(target=self.run, name="relay-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self.wake()
        for thread in [self._supervisor, *self._threads.values()]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout)

    def wake(self) -> None:
        """Look at the outbox now instead of at the next idle tick (call after committing new rows)."""
        with self._wake:
            self._wake.notify_all()

    def run(self, drain: bool = False) -> None:
        """Supervise until stopped; with `drain`, return once no signer this process has a key for has work left."""
        while not self._stop.is_set():
            with Session(self.engine) as session:
                signers = set(
                    session.exec(
                        select(OutboxEntry.signer).where(OutboxEntry.status.in_(UNFINISHED)).distinct()  # type: ignore[attr-defined]
                    )
                )
            for signer in signers - self._active.keys():
                self._start_worker(signer)  # signers without a key are asked for again: a wallet may appear
            if drain and not any(name in self._active for name in signers):
                break
            self._sleep(self.config.idle_interval)
        if drain:
            self.stop()

    # Workers ---------------------------------------------------------------------------------------------------
    def _start_worker(self, signer: str) -> None:
        account = self.resolve_signer(signer)
        if account is None:
            status = self.workers.setdefault(signer, WorkerStatus(signer, ""))
            status.set("error", f"no key for signer {signer!r} in this process: its rows stay pending")
            return
        worker = SignerWorker(
            self.engine, relay_web3(self.rpc_url), account, signer, self.chain_id, self.config, self.failpoints
        )
        self.workers[signer] = worker.status
        self._active[signer] = worker
        thread = threading.Thread(target=self._work, args=(worker,), name=f"relay-{signer}", daemon=True)
        self._threads[signer] = thread
        thread.start()

    def _work(self, worker: SignerWorker) -> None:
        lease = signer_lease(self.engine, self.lock_dir, self.chain_id, worker.address)
        while not self._stop.is_set():
            if self._lead(worker, lease):
                return
            worker.status.set("locked", f"another process relays {worker.address} on chain {self.chain_id}; waiting")
            if self._sleep(2):
                return

    def _lead(self, worker: SignerWorker, lease: Lease) -> bool:
        """Relay while holding the lease; True when the service stops, False when the lease was lost or is taken."""
        try:
            if not lease.acquire():
                return False
        except Exception as err:  # noqa: BLE001 - e.g. the database is down: try again later
            worker.status.set("error", f"cannot take the relay lease: {describe_error(err, self.rpc_url)}")
            return False
        worker.reset()  # a new leader: rebroadcast what the node lost, like a fresh start
        backoff = 1.0
        try:
            while not self._stop.is_set():
                if not lease.held():
                    log.error("relay %s: lost the relay lease; stopped signing", worker.signer)
                    return False
                try:
                    busy = worker.step()
                except Exception as err:  # noqa: BLE001 - any failure of a pass is reported, then retried
                    worker.status.set("error", describe_error(err, self.rpc_url))
                    log.debug("relay %s pass failed", worker.signer, exc_info=True)
                    self._sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
                backoff = 1.0
                self._sleep(self.config.poll_interval if busy else self.config.idle_interval)
            return True
        finally:
            lease.release()
            worker.status.set("stopped")

    def _sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until woken; True when the service is stopping."""
        if not self._stop.is_set():
            with self._wake:
                self._wake.wait(seconds)
        return self._stop.is_set()

    # Status ----------------------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        with Session(self.engine) as session:
            counts = status_counts(session)
        return {
            "rows": counts,
            "pending": counts["pending"] + counts["signed"] + counts["sent"],
            "failed": counts["failed"],
            "workers": [status.as_dict() for status in self.workers.values()],
            "checked_at": time.time(),
        }
