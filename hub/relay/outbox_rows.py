"""How the relay worker reads and writes its outbox rows: snapshots to work on without holding SQL, and row updates
collected per phase into one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select, update

from hub.db import session_scope
from hub.relay.outbox import OutboxEntry, OutboxStatus, utcnow


class OutboxRows:
    """The SQL side of hub.relay.worker.SignerWorker (its base class): needs `engine`, `signer` and `_buffer`."""

    engine: Engine
    signer: str
    _buffer: list[tuple[int | None, dict[str, Any]]] | None

    def _rows(
        self, statuses: Iterable[OutboxStatus], limit: int | None = None, order_by_nonce: bool = False
    ) -> list[OutboxEntry]:
        with Session(self.engine, expire_on_commit=False) as session:
            query = select(OutboxEntry).where(
                OutboxEntry.signer == self.signer,
                OutboxEntry.status.in_(list(statuses)),  # type: ignore[attr-defined]
            )
            query = query.order_by(OutboxEntry.nonce if order_by_nonce else OutboxEntry.id).limit(limit)
            rows = list(session.exec(query))
            session.expunge_all()  # plain snapshots: no SQL (and no lock) is held while talking to the chain
            return rows

    def _mark_sent(self, ids: list[int]) -> None:
        for row_id in ids:
            self._save(row_id, status=OutboxStatus.SENT, sent_at=utcnow())

    @contextmanager
    def _batched(self) -> Iterator[None]:
        """Collect the row updates of a phase into one SQL transaction (a commit per row costs more than the chain
        calls on SQLite); what was learned before an exception is still written."""
        self._buffer = []
        try:
            yield
        finally:
            changes, self._buffer = self._buffer, None
            self._write_now(changes)

    def _save(self, row_id: int | None, **values: Any) -> None:
        if self._buffer is not None:
            self._buffer.append((row_id, values))
        else:
            self._write_now([(row_id, values)])

    def _write_now(self, changes: list[tuple[int | None, dict[str, Any]]]) -> None:
        """Write `changes` (after whatever is buffered, to keep their order) in one transaction, now."""
        if self._buffer:
            changes, self._buffer[:] = [*self._buffer, *changes], []
        if not changes:
            return
        with session_scope(self.engine) as session:
            now = utcnow()
            for row_id, values in changes:
                session.exec(update(OutboxEntry).where(OutboxEntry.id == row_id).values(**values, updated_at=now))
