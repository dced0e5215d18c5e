"""The SQL table of paid fine-tuning runs: one row per ModelFactory run, from its reservation to its charge."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger
from sqlmodel import Field, Session, SQLModel, col, select

from hub.rewards.models import Wei, utcnow


class TrainingStatus(StrEnum):
    RESERVED = "reserved"  # the maximum cost is held; the run is training (or died: it is charged in full at expiry)
    CHARGING = "charging"  # the charge's transfer to the protocol is in the relay's outbox
    PAID = "paid"  # the transfer is confirmed on chain
    FAILED = "failed"  # the transfer reverted (reason says why): the run is unpaid and its model cannot be published
    FREE = "free"  # charged 0 (nothing trained, or a price of 0): nothing to move


# What a payer still owes of a run: the whole hold while reserved, the charge until its transfer is confirmed.
OWING = (TrainingStatus.RESERVED, TrainingStatus.CHARGING)


class TrainingRun(SQLModel, table=True):
    __tablename__ = "training_runs"

    run_id: str = Field(primary_key=True, max_length=64)  # chosen by the kernel: a retried reservation finds the row
    payer: str = Field(max_length=255, index=True)  # the hub user whose token reserved it
    payer_address: str = Field(max_length=42)  # their custodial wallet: who is charged
    request_hash: str = Field(max_length=64)  # sha256 of the reservation request: a retry must be identical
    base: str = Field(max_length=255)
    datanet: str | None = Field(default=None, max_length=255)
    datanet_version: int | None = Field(default=None, sa_type=BigInteger)
    datanet_root: str | None = Field(default=None, max_length=66)
    rows_sha256: str = Field(max_length=64)
    config_hash: str = Field(max_length=64)
    planned_steps: int = Field(sa_type=BigInteger)
    planned_tokens: int = Field(sa_type=BigInteger)
    step_tokens: list[int] = Field(sa_type=JSON)  # the platform's own count of every planned step's tokens
    price_wei: int = Field(sa_type=Wei)  # per token, as in force at reservation
    reserved: int = Field(sa_type=Wei)
    status: str = Field(default=TrainingStatus.RESERVED, max_length=16, index=True)
    outcome: str | None = Field(default=None, max_length=16)  # complete | stopped | failed | expired
    steps: int | None = Field(default=None, sa_type=BigInteger)  # steps charged
    tokens: int | None = Field(default=None, sa_type=BigInteger)  # tokens charged
    amount: int | None = Field(default=None, sa_type=Wei)  # OPEN base units charged
    reported: dict[str, Any] | None = Field(default=None, sa_type=JSON)  # the kernel's end report, as sent
    reason: str | None = Field(default=None, max_length=1000)
    outbox_id: int | None = None
    treasury: str | None = Field(default=None, max_length=42)
    model: str | None = Field(default=None, max_length=255, unique=True)  # the one published model it paid for
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(index=True)
    finished_at: datetime | None = None


def training_owed(session: Session, payer: str) -> int:
    """OPEN `payer` owes for training that the chain balance does not show yet (holds, and charges in flight)."""
    runs = session.exec(
        select(TrainingRun.status, TrainingRun.reserved, TrainingRun.amount).where(
            TrainingRun.payer == payer, col(TrainingRun.status).in_(OWING)
        )
    ).all()
    return sum(int(reserved if status == TrainingStatus.RESERVED else amount or 0) for status, reserved, amount in runs)
