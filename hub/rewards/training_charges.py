"""Paid fine-tuning: reserve a run's maximum cost, charge what it trained, expire what never reported.

A run's life: `reserve` (the platform's own token count × the price in force, held from the payer's custodial wallet
under the same per-payer lock as inference fee reservations) → `finish` (the charge: every planned step's tokens
for a complete run, the steps done for a stopped or failed one; the rest of the hold is released) → an ERC-20
transfer from the payer's wallet to the protocol treasury in the relay outbox (kind "training.charge", ref = run id:
a second enqueue finds the same row) → paid once the relay confirms it. A run that never reports is charged its whole
hold when the hold expires (`expire`): the platform cannot tell a crashed kernel from one that withholds its report.

What the platform trusts from a kernel: only the number of steps a stopped or failed run reached. That number is
bounded by the plan, and a run charged as stopped yields an adapter the platform will not publish (its manifest
must name a complete, paid run whose settings and data match; hub.rewards.training_publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.db import session_scope
from hub.ledger.contracts import Ledger
from hub.relay.outbox import OutboxEntry, OutboxStatus, enqueue, user_signer
from hub.rewards.models import utcnow
from hub.rewards.money import wei_to_open
from hub.rewards.reservations import Reservations, spendable_of
from hub.rewards.training_models import TrainingRun, TrainingStatus
from hub.rewards.training_plan import PlannedRun

CHARGE_KIND = "training.charge"


class ChargeError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass(frozen=True)
class PayerWallet:
    username: str
    address: str
    open_balance: int  # OPEN base units on chain
    gas: int  # wei of ETH on chain
    gas_needed: int  # wei the charge's transfer may cost


class EndReport(BaseModel):
    """How a run ended, as its kernel says: only `steps` of a stopped or failed run is used, bounded by the plan."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["complete", "stopped", "failed"]
    steps: int = Field(ge=0, le=10**12, description="optimizer steps done")
    tokens: int = Field(default=0, ge=0, le=10**15, description="tokens the kernel counted (recorded, not trusted)")


def _open(wei: int) -> str:
    return format(wei_to_open(wei).normalize(), "f") if wei else "0"


def refusal(planned: PlannedRun, price_wei: int, cost: int, spendable: int, wallet: PayerWallet) -> str:
    price = _open(price_wei)
    return (
        f"not enough OPEN to train: this run trains {planned.tokens} tokens × {price} OPEN/token = {_open(cost)} OPEN, "
        f"and wallet {wallet.address} can spend {_open(max(spendable, 0))} OPEN (it holds "
        f"{_open(wallet.open_balance)} OPEN; the rest is held by unsettled fees and other runs). Get OPEN: ask an "
        f"admin or your instructor to fund your wallet (openledger-workshop fund, or the faucet on a dev chain), or "
        f"send OPEN to {wallet.address}; or train fewer tokens (fewer epochs, max_steps, a smaller max_len)"
    )


class TrainingCharges:
    def __init__(self, engine: Engine, ttl_s: float) -> None:
        self.engine = engine
        self.ttl = timedelta(seconds=ttl_s)
        self.locks = Reservations(engine)

    def reserve(
        self, run_id: str, request_hash: str, planned: PlannedRun, price_wei: int, wallet: PayerWallet
    ) -> tuple[TrainingRun, bool]:
        """Hold the run's maximum cost; (run, created). A retry of the same request returns the same run; another
        request with the same id, or any request for a run that has ended, is refused (409)."""
        if price_wei < 0 or any(tokens < 0 for tokens in planned.step_tokens):
            raise ValueError(f"a training price and token counts are never negative (price {price_wei})")
        cost = planned.tokens * price_wei
        with self.locks.locked(wallet.username) as session:
            existing = session.get(TrainingRun, run_id)
            if existing is not None:
                if existing.payer != wallet.username or existing.request_hash != request_hash:
                    raise ChargeError(409, f"run id {run_id} is taken by another run: start a run with a new id")
                if existing.status != TrainingStatus.RESERVED:
                    raise ChargeError(409, f"run {run_id} has ended ({existing.outcome}); a run id pays for one run")
                return existing, False
            spendable = spendable_of(session, wallet.username, wallet.open_balance)
            if spendable < cost:
                raise ChargeError(402, refusal(planned, price_wei, cost, spendable, wallet))
            if cost > 0 and wallet.gas < wallet.gas_needed:
                raise ChargeError(
                    402,
                    f"wallet {wallet.address} has {wallet.gas} wei of gas; paying for the run needs up to "
                    f"{wallet.gas_needed}: ask an admin to fund it (the faucet also sends gas)",
                )
            now = utcnow()
            run = TrainingRun(
                run_id=run_id, payer=wallet.username, payer_address=wallet.address, request_hash=request_hash,
                base=planned.base, datanet=planned.datanet, datanet_version=planned.version,
                datanet_root=planned.root, rows_sha256=planned.rows_sha256, config_hash=planned.config_hash,
                planned_steps=len(planned.step_tokens), planned_tokens=planned.tokens,
                step_tokens=planned.step_tokens, price_wei=price_wei, reserved=cost, expires_at=now + self.ttl,
            )  # fmt: skip
            session.add(run)
        return run, True

    def finish(self, username: str, run_id: str, report: EndReport, ledger: Ledger, treasury: str) -> TrainingRun:
        """Charge the run as reported (idempotent: the same report again returns the same charge)."""
        with self.locks.locked(username) as session:
            run = session.get(TrainingRun, run_id)
            if run is None or run.payer != username:
                raise ChargeError(404, f"you have no training run {run_id[:64]!r}")
            reported = report.model_dump()
            if run.status != TrainingStatus.RESERVED:
                if run.reported == reported:
                    return run
                raise ChargeError(409, f"run {run_id} was already charged ({run.outcome}): {_open(run.amount or 0)} "
                                       "OPEN; a run is charged once")  # fmt: skip
            if report.steps > run.planned_steps:
                raise ChargeError(
                    400, f"steps={report.steps} is more than the {run.planned_steps} steps this run planned"
                )
            if report.outcome == "complete" and report.steps != run.planned_steps:
                raise ChargeError(
                    400, f"a complete run does all {run.planned_steps} planned steps, not {report.steps}: "
                    "report it as stopped or failed"
                )  # fmt: skip
            if utcnow() >= run.expires_at:
                self._charge(session, run, run.planned_steps, "expired", ledger, treasury)
                run.reason = "the run reported after its reservation expired: charged in full"
                return run
            run.reported = reported
            self._charge(session, run, report.steps, report.outcome, ledger, treasury)
        return run

    def expire(self, ledger: Ledger, treasury: str, now: datetime | None = None) -> list[str]:
        """Charge every run whose hold lapsed without an end report, in full; the run ids charged."""
        with Session(self.engine) as session:
            due = session.exec(
                select(TrainingRun.run_id, TrainingRun.payer).where(
                    TrainingRun.status == TrainingStatus.RESERVED, col(TrainingRun.expires_at) <= (now or utcnow())
                )
            ).all()
        charged = []
        for run_id, payer in due:
            with self.locks.locked(payer) as session:
                run = session.get(TrainingRun, run_id)
                if run is None or run.status != TrainingStatus.RESERVED:
                    continue  # it reported meanwhile
                self._charge(session, run, run.planned_steps, "expired", ledger, treasury)
                run.reason = "no end report before the reservation expired (a crashed or withheld run): charged in full"
                charged.append(run_id)
        return charged

    def sync(self) -> None:
        """Charges whose transfer the relay finished: confirmed → paid, reverted → failed (the run is unpaid)."""
        with session_scope(self.engine) as session:
            for run in session.exec(select(TrainingRun).where(TrainingRun.status == TrainingStatus.CHARGING)).all():
                follow_transfer(session, run)

    @staticmethod
    def _charge(session: Session, run: TrainingRun, steps: int, outcome: str, ledger: Ledger, treasury: str) -> None:
        tokens = sum(run.step_tokens[:steps])
        run.steps, run.tokens, run.amount = steps, tokens, tokens * run.price_wei
        run.outcome, run.finished_at, run.treasury = outcome, utcnow(), treasury
        if run.amount == 0:
            run.status = TrainingStatus.FREE
            return
        call = ledger.token.transfer(treasury, run.amount)
        entry = enqueue(session, call, signer=user_signer(run.payer), kind=CHARGE_KIND, ref=run.run_id)
        session.flush()
        run.outbox_id, run.status = entry.id, TrainingStatus.CHARGING


def follow_transfer(session: Session, run: TrainingRun) -> str:
    """A charging run's status from its transfer: confirmed → paid, reverted → failed (unpaid); else unchanged."""
    if run.status == TrainingStatus.CHARGING:
        entry = session.get(OutboxEntry, run.outbox_id) if run.outbox_id else None
        if entry is None or entry.status == OutboxStatus.CONFIRMED:
            run.status = TrainingStatus.PAID
        elif entry.status == OutboxStatus.FAILED:
            run.status = TrainingStatus.FAILED
            run.reason = f"the transfer to the protocol reverted: {entry.last_error}"[:1000]
    return run.status


def run_view(session: Session, run: TrainingRun) -> dict[str, Any]:
    """A run's reservation and charge as the SDK and the manifest record them (amounts in base units, as text)."""
    entry = session.get(OutboxEntry, run.outbox_id) if run.outbox_id else None
    return {
        "run_id": run.run_id,
        "payer": run.payer,
        "payer_address": run.payer_address,
        "status": run.status,
        "outcome": run.outcome,
        "base": run.base,
        "datanet": run.datanet and {"name": run.datanet, "version": run.datanet_version, "root": run.datanet_root},
        "rows_sha256": run.rows_sha256,
        "config_hash": run.config_hash,
        "planned_steps": run.planned_steps,
        "planned_tokens": run.planned_tokens,
        "price_per_token_wei": str(run.price_wei),
        "price_per_token": _open(run.price_wei),
        "reserved_wei": str(run.reserved),
        "reserved": _open(run.reserved),
        "expires_at": run.expires_at.isoformat(),
        "steps": run.steps,
        "tokens": run.tokens,
        "amount_wei": None if run.amount is None else str(run.amount),
        "amount": None if run.amount is None else _open(run.amount),
        "paid_to": run.treasury,
        "reason": run.reason,
        "transfer": entry and {"outbox_id": entry.id, "status": entry.status, "tx_hash": entry.tx_hash},
        "model": run.model,
    }


__all__ = ["ChargeError", "EndReport", "PayerWallet", "TrainingCharges", "run_view"]
