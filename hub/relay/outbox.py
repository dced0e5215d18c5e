"""The outbox: every chain write is a row, added in the same SQL transaction as the business row it belongs to.

A feature that must write to the chain does, inside its own transaction:

    call = ledger.datanets.create_datanet(datanet_id, owner, metadata_hash)   # a PreparedCall, nothing sent
    enqueue(session, call, signer=OPERATOR, kind="datanet.create", ref=datanet_id_hex)
    session.commit()                                                          # business row + outbox row, or neither

The relay (hub.relay.worker) then signs, sends and confirms the row. Row life: pending → signed (nonce assigned, raw
transaction stored, maybe broadcast) → sent (the node accepted it) → confirmed | failed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Index, Text, UniqueConstraint
from sqlmodel import Field, Session, SQLModel, func, select

from hub.ledger.tx import Fees, PreparedCall

# The platform's operator key (registrar, attestor, minter on the contracts): the signer of almost every write.
OPERATOR = "operator"


def user_signer(username: str) -> str:
    """The signer name of a hub user's custodial key (hub.keys), e.g. for a claim sent from their wallet."""
    return f"user:{username}"


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting for the relay; no nonce yet
    SIGNED = "signed"  # nonce assigned, raw transaction stored; perhaps broadcast (a crash may hide that)
    SENT = "sent"  # a node accepted the transaction; waiting for the receipt, then for finality
    CONFIRMED = "confirmed"  # mined with success (or already on chain) in a block that is final (hub.relay.finality)
    FAILED = "failed"  # reverted (decoded error in last_error); not retried


IN_FLIGHT = (OutboxStatus.SIGNED, OutboxStatus.SENT)
UNFINISHED = (OutboxStatus.PENDING, *IN_FLIGHT)


class OutboxConflictError(ValueError):
    """The same (kind, ref) was enqueued before with a different call or signer."""


def utcnow() -> datetime:
    return datetime.now(UTC)  # aware: sqlmodel's datetime columns store and return UTC


class OutboxEntry(SQLModel, table=True):
    __tablename__ = "ledger_outbox"
    __table_args__ = (
        UniqueConstraint("kind", "ref", name="uq_ledger_outbox_kind_ref"),
        Index("ix_ledger_outbox_signer_status", "signer", "status", "id"),
        Index("ix_ledger_outbox_status", "status"),  # the relay's "which signers have work" look, every 0.5 s
    )

    id: int | None = Field(default=None, primary_key=True)
    signer: str = Field(max_length=128)
    kind: str = Field(max_length=64)
    ref: str = Field(max_length=255)  # the business key, unique per kind: a retried enqueue finds the same row
    contract: str = Field(max_length=64)  # names kept to decode a revert into the contract's custom error
    function: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=42)  # None deploys `calldata`
    calldata: str = Field(sa_type=Text)
    value: str = Field(default="0", max_length=80)  # wei as decimal text: uint256 does not fit SQL integers
    status: str = Field(default=OutboxStatus.PENDING, max_length=16)
    chain_id: int | None = Field(default=None, sa_type=BigInteger)
    nonce: int | None = Field(default=None, sa_type=BigInteger)
    gas: int | None = Field(default=None, sa_type=BigInteger)
    max_fee_per_gas: int | None = Field(default=None, sa_type=BigInteger)
    max_priority_fee_per_gas: int | None = Field(default=None, sa_type=BigInteger)
    gas_price: int | None = Field(default=None, sa_type=BigInteger)
    raw_tx: str | None = Field(default=None, sa_type=Text)
    tx_hash: str | None = Field(default=None, max_length=66, index=True)
    # Hashes of earlier signatures of this row (replaced by fee bumps): any of them may still be the one mined.
    previous_hashes: str = Field(default="", sa_type=Text)
    attempts: int = 0  # signatures made for this row
    last_error: str | None = Field(default=None, sa_type=Text)
    error_name: str | None = Field(default=None, max_length=128)
    receipt_block: int | None = Field(default=None, sa_type=BigInteger)
    # The block's hash at confirmation: the reconciler re-checks it (a reorg or a chain restarted from older state).
    receipt_block_hash: str | None = Field(default=None, max_length=66)
    gas_used: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    confirmed_at: datetime | None = None

    def prepared_call(self) -> PreparedCall:
        return PreparedCall(self.contract, self.function, self.target, self.calldata, int(self.value))

    def fees(self) -> Fees:
        return Fees(self.max_fee_per_gas, self.max_priority_fee_per_gas, self.gas_price)

    def all_hashes(self) -> list[str]:
        """The current hash first, then the earlier ones, newest first."""
        earlier = [h for h in self.previous_hashes.split(",") if h]
        return ([self.tx_hash] if self.tx_hash else []) + earlier[::-1]

    def max_cost(self) -> int:
        """The most this transaction can cost the signer: gas limit × max fee per gas + value."""
        return (self.gas or 0) * self.fees().max_per_gas + int(self.value)


def enqueue(session: Session, call: PreparedCall, *, signer: str, kind: str, ref: str) -> OutboxEntry:
    """Add the chain write `call` to the caller's session (it commits with the caller's transaction).

    Idempotent on (kind, ref): enqueuing the same business key again returns the existing row, pending or done;
    the same key with a different call or signer raises OutboxConflictError. Nothing is flushed or committed here.
    """
    for name, text in (("signer", signer), ("kind", kind), ("ref", ref)):
        if not text or not text.strip():
            raise ValueError(f"enqueue needs a non-empty {name}")
    existing = _find(session, kind, ref)
    if existing is not None:
        same = (existing.signer, existing.target, existing.calldata, int(existing.value)) == (
            signer,
            call.to,
            call.data,
            call.value,
        )
        if not same:
            raise OutboxConflictError(
                f"outbox row {kind}:{ref} exists with another call or signer ({existing.contract}.{existing.function} "
                f"by {existing.signer}): a business key must always map to the same chain write"
            )
        return existing
    entry = OutboxEntry(
        signer=signer,
        kind=kind,
        ref=ref,
        contract=call.contract,
        function=call.function,
        target=call.to,
        calldata=call.data,
        value=str(call.value),
    )
    session.add(entry)
    return entry


def _find(session: Session, kind: str, ref: str) -> OutboxEntry | None:
    # Rows added earlier in this same session but not flushed yet: a query would not see them without a flush.
    for obj in session.new:
        if isinstance(obj, OutboxEntry) and obj.kind == kind and obj.ref == ref:
            return obj
    # no_autoflush: enqueue must not flush (and so fail early on) the caller's other pending rows.
    with session.no_autoflush:
        return session.exec(select(OutboxEntry).where(OutboxEntry.kind == kind, OutboxEntry.ref == ref)).first()


def status_counts(session: Session, signer: str | None = None) -> dict[str, int]:
    """Rows per status (every status present, 0 when none), for one signer or all."""
    query = select(OutboxEntry.status, func.count()).group_by(OutboxEntry.status)
    if signer is not None:
        query = query.where(OutboxEntry.signer == signer)
    counts = {status.value: 0 for status in OutboxStatus}
    for status, count in session.exec(query):
        counts[status] = count
    return counts
