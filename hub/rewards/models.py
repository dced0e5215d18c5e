"""SQL tables of the rewards feature: inference records, settlement epochs, per-payer charges, per-account credits.

Amounts are uint256 base units: stored as decimal text (`Wei` columns), since SQL integers stop at 2**63 ≈ 9.2 OPEN
and SQLite's NUMERIC is a float. Sums are therefore done in Python, exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String, TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)  # aware: sqlmodel's datetime columns store and return UTC


class Wei(TypeDecorator):
    """A non-negative Python int stored as decimal text."""

    impl = String(80)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"an amount column takes a non-negative int, got {value!r}")
        return str(value)

    def process_result_value(self, value: Any, dialect: Any) -> int | None:
        return None if value is None else int(value)


class ChargeStatus(StrEnum):
    OPEN = "open"  # not in an epoch yet
    PENDING = "pending"  # its epoch is charging the payer
    PAID = "paid"  # the payer's transfer is confirmed: the record is in the epoch root and pays out
    UNPAID = "unpaid"  # the payer could not pay (reason in charge_reason): excluded, pays nobody


class InferenceRecordRow(SQLModel, table=True):
    __tablename__ = "inference_records"
    __table_args__ = (
        Index("ix_inference_records_epoch_payer", "epoch", "payer"),
        Index("ix_inference_records_model_created", "model", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(max_length=255, unique=True)
    record_id: str = Field(max_length=66, unique=True)  # derive_id("inference", request_id), 0x hex
    model: str = Field(max_length=255)
    model_id: str = Field(max_length=66)  # bytes32 in the record leaf
    adapter: str | None = Field(default=None, max_length=255)
    payer: str = Field(max_length=255, index=True)  # hub user name
    payer_address: str = Field(max_length=42)  # their custodial address: the leaf's `user`, and who is charged
    model_owner: str = Field(max_length=42, index=True)
    tokens: int = Field(sa_type=BigInteger)
    fee: int = Field(sa_type=Wei)
    # The signed document (openledger_sdk.attribution): split, shares, top examples; hashed into the leaf.
    attribution: dict[str, Any] = Field(sa_type=JSON)
    attribution_hash: str = Field(max_length=66)
    epoch: int | None = Field(default=None, index=True, sa_type=BigInteger)
    charge_status: str = Field(default=ChargeStatus.OPEN, max_length=16)
    charge_reason: str | None = Field(default=None, max_length=1000)
    outbox_id: int | None = None  # per_record mode: its recordInference row
    created_at: datetime = Field(default_factory=utcnow, index=True)


class EpochStatus(StrEnum):
    CLOSED = "closed"  # records assigned; payers not charged yet
    CHARGING = "charging"  # payers' transfers to the RewardDistributor are in the outbox
    COMMITTING = "committing"  # roots computed; commitEpoch and setRoot are in the outbox
    SETTLED = "settled"  # both confirmed: the epoch's payouts are claimable
    EMPTY = "empty"  # no record was paid: nothing to commit
    FAILED = "failed"  # commitEpoch or setRoot reverted (error says why); an admin retries with POST /api/admin/settle


IN_PROGRESS = (EpochStatus.CLOSED, EpochStatus.CHARGING, EpochStatus.COMMITTING, EpochStatus.FAILED)
WITH_PAYOUTS = (EpochStatus.COMMITTING, EpochStatus.SETTLED, EpochStatus.FAILED)


class RewardEpoch(SQLModel, table=True):
    __tablename__ = "reward_epochs"

    number: int = Field(primary_key=True, sa_type=BigInteger)  # the AttributionLedger epoch
    status: str = Field(default=EpochStatus.CLOSED, max_length=16, index=True)
    closed_at: datetime = Field(default_factory=utcnow)
    settled_at: datetime | None = None
    records: int = 0  # records closed into the epoch (paid or not)
    paid_records: int = 0
    tokens: int = Field(default=0, sa_type=BigInteger)
    fees: int = Field(default=0, sa_type=Wei)
    owner_fees: int = Field(default=0, sa_type=Wei)
    contributor_fees: int = Field(default=0, sa_type=Wei)
    protocol_fees: int = Field(default=0, sa_type=Wei)
    records_root: str | None = Field(default=None, max_length=66)
    payouts_root: str | None = Field(default=None, max_length=66)
    previous_root: str | None = Field(default=None, max_length=66)  # the distributor root setRoot expects
    treasury: str | None = Field(default=None, max_length=42)
    # The governed parameters the epoch's records were split with: read at its start block (hub.governance.periods).
    parameters_block: int | None = Field(default=None, sa_type=BigInteger)
    parameters_hash: str | None = Field(default=None, max_length=66)
    parameters: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    commit_outbox_id: int | None = None
    root_outbox_id: int | None = None
    attempt: int = 0  # retries after a failed commit
    error: str | None = Field(default=None, max_length=2000)


class EpochCharge(SQLModel, table=True):
    """One payer's fees of one epoch, sent from their custodial wallet to the RewardDistributor."""

    __tablename__ = "reward_charges"

    epoch: int = Field(primary_key=True, sa_type=BigInteger)
    payer: str = Field(primary_key=True, max_length=255)
    payer_address: str = Field(max_length=42)
    amount: int = Field(sa_type=Wei)
    records: int = 0
    status: str = Field(default=ChargeStatus.PENDING, max_length=16)
    reason: str | None = Field(default=None, max_length=1000)
    outbox_id: int | None = None


class RewardCredit(SQLModel, table=True):
    """What one account earned in one epoch, by role; cumulative totals are sums of these."""

    __tablename__ = "reward_credits"

    epoch: int = Field(primary_key=True, sa_type=BigInteger)
    account: str = Field(primary_key=True, max_length=42, index=True)
    amount: int = Field(sa_type=Wei)
    as_owner: int = Field(default=0, sa_type=Wei)
    as_contributor: int = Field(default=0, sa_type=Wei)
    as_protocol: int = Field(default=0, sa_type=Wei)
