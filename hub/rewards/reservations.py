"""Fee reservations: a priced request holds its maximum cost before any work, so concurrent requests cannot spend
the same OPEN twice.

spendable = chain balance − fees recorded but not settled yet − reservations still held − training owed
(fine-tuning holds and charges in flight, hub.rewards.training_models)

`reserve()` checks and inserts in one transaction that holds a per-payer lock: `BEGIN IMMEDIATE` on SQLite (one
writer at a time for the whole file), `SELECT … FOR UPDATE` on the payer's `payer_locks` row on PostgreSQL. Of 50
requests at once from a payer who can afford 3, exactly 3 get a reservation. When the request finishes, its record
(the real fee, ≤ the reservation) is written and the reservation deleted in the same transaction (`consume`, under
the same lock); a failed, cancelled or disconnected request deletes it (`release`). A reservation of a process that
died expires after `ttl_s`, so it cannot hold money forever.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import delete, text
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from hub.rewards.models import ChargeStatus, InferenceRecordRow, Wei, utcnow
from hub.rewards.training_models import training_owed

UNSETTLED = (ChargeStatus.OPEN, ChargeStatus.PENDING)
DEFAULT_TTL_S = 900  # longer than any generation may take; a dead process's hold lapses after this


class PayerLock(SQLModel, table=True):
    """One row per payer, locked FOR UPDATE while a reservation is decided (PostgreSQL)."""

    __tablename__ = "payer_locks"
    payer: str = Field(primary_key=True, max_length=255)


class FeeReservation(SQLModel, table=True):
    __tablename__ = "fee_reservations"
    request_id: str = Field(primary_key=True, max_length=255)
    payer: str = Field(max_length=255, index=True)
    amount: int = Field(sa_type=Wei)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)


class NotEnoughFundsError(Exception):
    def __init__(self, spendable: int, needed: int) -> None:
        super().__init__(f"spendable {spendable} < needed {needed}")
        self.spendable, self.needed = spendable, needed


class Reservations:
    def __init__(self, engine: Engine, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.engine = engine
        self.ttl = timedelta(seconds=ttl_s)

    def reserve(self, payer: str, request_id: str, amount: int, balance: int | None) -> None:
        """Hold `amount` for `request_id`, or NotEnoughFundsError. `balance` None (chain unreadable): hold without a
        check (inference must not stop with the chain; settlement still refuses what cannot be paid)."""
        with self.locked(payer) as session:
            now = utcnow()
            session.exec(delete(FeeReservation).where(col(FeeReservation.expires_at) <= now))
            if balance is not None:
                spendable = spendable_of(session, payer, balance, now)
                if spendable < amount:
                    raise NotEnoughFundsError(spendable, amount)
            session.add(FeeReservation(request_id=request_id, payer=payer, amount=amount, expires_at=now + self.ttl))

    def release(self, request_id: str) -> None:
        """Give the whole hold back (failure, cancel, disconnect); nothing happens if it is gone already."""
        with Session(self.engine) as session:
            session.exec(delete(FeeReservation).where(col(FeeReservation.request_id) == request_id))
            session.commit()

    @staticmethod
    def consume(session: Session, request_id: str) -> None:
        """In the transaction that records the real fee (under `locked(payer)`): the hold becomes the record."""
        session.exec(delete(FeeReservation).where(col(FeeReservation.request_id) == request_id))

    @contextmanager
    def locked(self, payer: str) -> Iterator[Session]:
        """One transaction holding the payer's lock; committed when the block ends without error.

        Recording a fee takes the lock too: `reserve` reads the unsettled fees and the holds in two statements, and
        on PostgreSQL (READ COMMITTED) a record committed between them would be counted in neither."""
        with self.engine.connect() as connection:
            if self.engine.dialect.name == "sqlite":
                # pysqlite begins lazily and DEFERRED; IMMEDIATE takes the write lock before we read the sums.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                connection.execute(
                    text("INSERT INTO payer_locks (payer) VALUES (:payer) ON CONFLICT DO NOTHING"), {"payer": payer}
                )
                connection.execute(
                    text("SELECT payer FROM payer_locks WHERE payer = :payer FOR UPDATE"), {"payer": payer}
                )
            with Session(bind=connection) as session:
                try:
                    yield session
                    session.flush()
                    connection.commit()  # the session joined our transaction: committing it is ours to do
                finally:
                    if connection.in_transaction():
                        connection.rollback()  # refused or failed: nothing was added


def spendable_of(session: Session, payer: str, balance: int, now: datetime | None = None) -> int:
    """What `payer` may still commit: the chain balance less every fee, hold and training charge not yet on chain."""
    return balance - unsettled_fees(session, payer) - held(session, payer, now) - training_owed(session, payer)


def unsettled_fees(session: Session, payer: str) -> int:
    """Fees recorded for `payer` that no settlement has charged yet."""
    fees = session.exec(
        select(InferenceRecordRow.fee).where(
            InferenceRecordRow.payer == payer, col(InferenceRecordRow.charge_status).in_(UNSETTLED)
        )
    ).all()
    return sum(int(fee) for fee in fees)


def held(session: Session, payer: str, now: datetime | None = None) -> int:
    """What `payer`'s live reservations hold."""
    amounts = session.exec(
        select(FeeReservation.amount).where(
            FeeReservation.payer == payer, col(FeeReservation.expires_at) > (now or utcnow())
        )
    ).all()
    return sum(int(amount) for amount in amounts)
