"""Who may sign for a key: one relay worker per signer address and chain, across processes and replicas.

- PostgreSQL (platform replicas sharing one database): a session-level advisory lock held on a connection of its own
  for as long as the worker leads. The server drops it when that connection ends, so a killed leader's lease is free
  as soon as its socket closes, and a standby takes over at its next try (every 2 s).
- SQLite (one host): an flock on a file beside the data dir; the kernel drops it when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine


class Lease(Protocol):
    def acquire(self) -> bool:
        """Take the lease if it is free (never blocks); True when this process holds it now."""
        ...

    def held(self) -> bool:
        """Still ours (a lost database connection means it may be someone else's by now)."""
        ...

    def release(self) -> None: ...


class FileLease:
    """An exclusive, non-blocking flock; the kernel drops it when the process dies, SIGKILL included."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def held(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def advisory_key(name: str) -> int:
    """A signed 64-bit advisory lock key for `name` (PostgreSQL's bigint)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


class PostgresLease:
    """A PostgreSQL advisory lock on a dedicated autocommit connection (no transaction stays open)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = advisory_key(name)
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar()
        except Exception:
            connection.invalidate()
            connection.close()
            raise
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def held(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
        except Exception:  # noqa: BLE001 - the connection (and so the lock) is gone
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self._connection.close()
        except Exception:  # noqa: BLE001 - a broken connection took the lock with it
            self._drop()
        self._connection = None

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.invalidate()  # never back into the pool: the lock would travel with it
            self._connection.close()
            self._connection = None


def signer_lease(engine: Engine, lock_dir: Path, chain_id: int, address: str) -> Lease:
    """The lease for relaying `address` on `chain_id`: in the database when it is PostgreSQL, else a file lock."""
    if engine.url.get_backend_name() == "postgresql":
        return PostgresLease(engine, f"openledger-relay:{chain_id}:{address.lower()}")
    return FileLease(lock_dir / str(chain_id) / f"{address}.lock")
