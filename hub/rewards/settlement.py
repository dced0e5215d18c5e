"""Epoch settlement: close → charge payers → commit both roots → settled; one epoch at a time, idempotent by number.

1. close (one SQL transaction): every record without an epoch gets the next epoch number. Nothing open: no-op.
2. charge: per payer, the sum of their fees goes from their custodial wallet to the RewardDistributor (an ERC-20
   transfer in the outbox, signed with their key). A payer whose wallet holds too little OPEN, or too little gas
   for the transfer, is not charged: their records are marked unpaid (with the reason) and excluded. A transfer
   that reverts all the same has the same effect.
3. commit, once every transfer is confirmed or failed: credits per account from the paid records (model owners,
   contributors, the treasury; a linked payout address replaces a custodial one), the records tree of the paid
   records and the cumulative payouts tree (all-time totals), then AttributionLedger.commitEpoch(totals) and
   RewardDistributor.setRoot(new, expected previous) as two ordered operator rows in one transaction.
4. settled once both are confirmed. A revert marks the epoch failed; POST /api/admin/settle retries it.

Each step re-checks the epoch's status inside its transaction, and every outbox row has a deterministic key, so a
crash or a second caller at any point repeats nothing. Funds are in the distributor before its root can pay them.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, func, select, update

from hub.db import session_scope
from hub.governance.periods import ensure_first_period, parameters_for_metering, parameters_or_none, start_period
from hub.ledger.contracts import EpochTotals, Ledger
from hub.ledger.tx import suggest_fees
from hub.platform.runtime import PlatformRuntime
from hub.relay.outbox import OPERATOR, UNFINISHED, OutboxEntry, OutboxStatus, enqueue, user_signer
from hub.rewards.chain_state import SettlementBlockedError, payment_refusal, pending_chain_writes
from hub.rewards.config import RewardSettings
from hub.rewards.credits import epoch_credits, payout_addresses
from hub.rewards.models import (
    IN_PROGRESS,
    ChargeStatus,
    EpochCharge,
    EpochStatus,
    InferenceRecordRow,
    RewardCredit,
    RewardEpoch,
)
from hub.rewards.reports import aware, epoch_report
from hub.rewards.trees import cumulative_totals, leaf_of, paid_records
from openledger_sdk.ledger.records import build_payouts_tree, build_records_tree

log = logging.getLogger("hub.rewards")

__all__ = ["NotReadyError", "SettlementBlockedError", "Settler"]

ZERO_ROOT = "0x" + "00" * 32
CHARGE_GAS = 100_000  # an ERC-20 transfer takes 35-55k gas; a payer must hold gas for this much at today's fees
TERMINAL = (EpochStatus.SETTLED, EpochStatus.EMPTY, EpochStatus.FAILED)
MAX_REASON = 1000  # reasons and errors are stored in bounded columns


class NotReadyError(Exception):
    """The ledger is not up yet (the chain is starting); nothing was done."""


class Settler:
    """Runs the epochs of one platform: `tick()` from the background task, `settle_now()` for admins."""

    def __init__(self, runtime: PlatformRuntime, settings: RewardSettings) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.settings = settings
        self.lock = threading.RLock()  # one settlement step at a time in this process

    # Entry points ------------------------------------------------------------------------------------------------
    def tick(self, now: datetime | None = None) -> None:
        """Advance the epoch in progress, or close a new one when the epoch length is up (background task)."""
        if self.runtime.extras.get("ledger") is None:
            return
        with self.lock:
            ensure_first_period(self.engine, self.runtime.extras["ledger"].ledger, self.settings)
            current = self._in_progress()
            if current is not None:
                if current.status != EpochStatus.FAILED:  # a failed one waits for an admin
                    self.advance(current.number)
                return
            if self._due(now or datetime.now(UTC)):
                closed = self.close()
                if closed is not None:
                    self.advance(closed)

    def settle_now(self, wait_s: float = 30) -> dict[str, Any]:
        """Admin: close an epoch now (or take the one in progress; retry it when failed) and drive it to the end,
        waiting up to `wait_s` for the relay. The epoch's report, or {"status": "nothing to settle"}."""
        self._deployment()
        with self.lock:
            ensure_first_period(self.engine, self.runtime.extras["ledger"].ledger, self.settings)
            current = self._in_progress()
            number = current.number if current is not None else self.close()
            if number is None:
                return {"status": "nothing to settle", "detail": "no inference records since the last epoch"}
            if current is not None and current.status == EpochStatus.FAILED:
                self.retry(number)
        deadline = time.monotonic() + wait_s
        while True:
            with self.lock:
                status = self.advance(number)
            if status in TERMINAL or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        with Session(self.engine) as session:
            return epoch_report(session, session.get(RewardEpoch, number), admin=True)

    def busy(self) -> bool:
        """True while an epoch is on its way (the background task then looks more often)."""
        current = self._in_progress()
        return current is not None and current.status != EpochStatus.FAILED

    def advance(self, number: int) -> str:
        """Take epoch `number` as far as it can go now; its status afterwards."""
        steps = {
            EpochStatus.CLOSED: self.charge,
            EpochStatus.CHARGING: self.commit,
            EpochStatus.COMMITTING: self.finish,
        }
        while True:
            with Session(self.engine) as session:
                epoch = session.get(RewardEpoch, number)
                status = epoch.status if epoch is not None else EpochStatus.FAILED
            step = steps.get(EpochStatus(status))
            if step is None or not step(number):
                return status

    # Steps (each returns True when the epoch moved on) ---------------------------------------------------------
    def close(self) -> int | None:
        """Give every open record the next epoch number; None (and no epoch) when there is none.

        The closed epoch keeps the parameter period its records were metered in; the next period starts with the
        parameters in force now, which is how a vote executed mid-epoch takes effect at the next epoch."""
        deployment = self.runtime.extras.get("ledger")
        upcoming = parameters_or_none(deployment.ledger if deployment else None, self.settings)
        with session_scope(self.engine) as session:
            open_records = select(func.max(InferenceRecordRow.id)).where(InferenceRecordRow.epoch.is_(None))  # type: ignore[union-attr]
            last_open = session.exec(open_records).one()
            if last_open is None:
                return None
            number = (session.exec(select(func.max(RewardEpoch.number))).one() or 0) + 1
            used = parameters_for_metering(session, self.settings)
            epoch = RewardEpoch(
                number=number, parameters_block=used.block, parameters_hash=used.hash, parameters=used.as_dict()
            )
            session.add(epoch)
            session.flush()  # the primary key makes a second closer with the same number fail here
            result = session.exec(
                update(InferenceRecordRow)
                .where(InferenceRecordRow.epoch.is_(None), InferenceRecordRow.id <= last_open)  # type: ignore[union-attr]
                .values(epoch=number, charge_status=ChargeStatus.PENDING)
            )
            epoch.records = count = result.rowcount
            if upcoming is not None:
                start_period(session, upcoming)
        log.info("rewards: closed epoch %d with %d records", number, count)
        return number

    def charge(self, number: int) -> bool:
        ledger, _ = self._deployment()
        with Session(self.engine) as session:
            dues: dict[str, list[Any]] = {}  # payer → [address, amount, records]
            for payer, address, fee in session.exec(
                select(InferenceRecordRow.payer, InferenceRecordRow.payer_address, InferenceRecordRow.fee).where(
                    InferenceRecordRow.epoch == number
                )
            ):
                due = dues.setdefault(payer, [address, 0, 0])
                due[1], due[2] = due[1] + fee, due[2] + 1
        gas_cost = CHARGE_GAS * suggest_fees(ledger.w3).max_per_gas
        refusals = {payer: self._cannot_pay(ledger, due[0], due[1], gas_cost) for payer, due in dues.items()}
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is None or epoch.status != EpochStatus.CLOSED:
                return False
            for payer, (address, amount, count) in sorted(dues.items()):
                charge = EpochCharge(epoch=number, payer=payer, payer_address=address, amount=amount, records=count)
                if refusals[payer]:
                    charge.status, charge.reason = ChargeStatus.UNPAID, refusals[payer]
                    self._mark_records(session, number, payer, ChargeStatus.UNPAID, refusals[payer])
                elif amount == 0:
                    charge.status = ChargeStatus.PAID  # free inferences: nothing to move
                else:
                    call = ledger.token.transfer(ledger.distributor.address, amount)
                    signer, ref = user_signer(payer), f"{number}:{payer}"
                    entry = enqueue(session, call, signer=signer, kind="rewards.charge", ref=ref)
                    session.flush()
                    charge.outbox_id = entry.id
                session.add(charge)
            epoch.status = EpochStatus.CHARGING
        unpaid = sorted(payer for payer, reason in refusals.items() if reason)
        log.info(
            "rewards: epoch %d charging %d payer(s); unpaid: %s", number, len(dues) - len(unpaid), unpaid or "none"
        )
        self._wake()
        return True

    def commit(self, number: int) -> bool:
        if not self._collect_charges(number):
            return False
        ledger, operator = self._deployment()
        treasury = self.settings.treasury or operator
        with Session(self.engine) as session:
            rows = paid_records(session, number)
            if not rows:
                return self._set_status(number, EpochStatus.CHARGING, EpochStatus.EMPTY, settled=True)
            credits, totals = epoch_credits(rows, treasury, payout_addresses(session))
            cumulative = cumulative_totals(session, number - 1)
            previous = session.exec(
                select(RewardEpoch.payouts_root)
                .where(RewardEpoch.number < number, RewardEpoch.payouts_root.is_not(None))  # type: ignore[union-attr]
                .order_by(RewardEpoch.number.desc())  # type: ignore[attr-defined]
            ).first()
        for account, credit in credits.items():
            cumulative[account] = cumulative.get(account, 0) + credit.amount
        records_root = build_records_tree(leaf_of(row) for row in rows).root
        # Nothing earned yet by anyone (only free inferences so far): no tree, the distributor root stays zero.
        payouts_root = build_payouts_tree(cumulative).root if cumulative else ZERO_ROOT
        previous_root = previous or ZERO_ROOT
        try:
            need_commit, need_root = pending_chain_writes(ledger, number, records_root, payouts_root, previous_root)
        except SettlementBlockedError as err:
            self._note_error(number, str(err))
            return False
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is None or epoch.status != EpochStatus.CHARGING:
                return False
            for account, credit in credits.items():
                session.add(RewardCredit(epoch=number, account=account, amount=credit.amount, **vars(credit)))
            epoch.paid_records, epoch.tokens, epoch.fees = totals.records, totals.tokens, totals.fees
            epoch.owner_fees, epoch.contributor_fees = totals.owner_fees, totals.contributor_fees
            epoch.protocol_fees, epoch.treasury, epoch.error = totals.protocol_fees, treasury, None
            epoch.records_root, epoch.payouts_root, epoch.previous_root = records_root, payouts_root, previous_root
            self._enqueue_commit(session, ledger, epoch, totals, need_commit, need_root)
            epoch.status = EpochStatus.COMMITTING
        log.info("rewards: epoch %d committing %d paid records, %d fees, payouts root %s", number, totals.records,
                 totals.fees, payouts_root)  # fmt: skip
        self._wake()
        return True

    def finish(self, number: int) -> bool:
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is None or epoch.status != EpochStatus.COMMITTING:
                return False
            entries = [session.get(OutboxEntry, i) for i in (epoch.commit_outbox_id, epoch.root_outbox_id) if i]
            if any(entry is not None and entry.status in UNFINISHED for entry in entries):
                return False
            failed = [entry for entry in entries if entry is not None and entry.status == OutboxStatus.FAILED]
            if failed:
                epoch.status = EpochStatus.FAILED
                epoch.error = "; ".join(f"{entry.function}: {entry.last_error}" for entry in failed)[:MAX_REASON]
                log.error("rewards: epoch %d failed: %s (retry: POST /api/admin/settle)", number, epoch.error)
                return True
            epoch.status, epoch.settled_at = EpochStatus.SETTLED, datetime.now(UTC)
        log.info("rewards: epoch %d settled", number)
        return True

    def retry(self, number: int) -> None:
        """Re-enqueue the chain writes of a failed epoch (new outbox keys); those already on chain are skipped."""
        ledger, _ = self._deployment()
        with Session(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            assert epoch is not None and epoch.records_root and epoch.payouts_root and epoch.previous_root
            totals = EpochTotals(epoch.paid_records, epoch.tokens, epoch.fees, epoch.owner_fees,
                                 epoch.contributor_fees, epoch.protocol_fees)  # fmt: skip
            roots = (epoch.records_root, epoch.payouts_root, epoch.previous_root)
        try:
            need_commit, need_root = pending_chain_writes(ledger, number, *roots)
        except SettlementBlockedError as err:
            self._note_error(number, str(err))
            return
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is None or epoch.status != EpochStatus.FAILED:
                return
            epoch.attempt = attempt = epoch.attempt + 1
            epoch.commit_outbox_id = epoch.root_outbox_id = None
            self._enqueue_commit(session, ledger, epoch, totals, need_commit, need_root)
            epoch.status, epoch.error = EpochStatus.COMMITTING, None
        log.info("rewards: retrying epoch %d (attempt %d)", number, attempt)
        self._wake()

    # Helpers -----------------------------------------------------------------------------------------------------
    def _deployment(self) -> tuple[Ledger, str]:
        deployment = self.runtime.extras.get("ledger")
        if deployment is None:
            raise NotReadyError("the ledger is not up yet (waiting for the chain): settle again in a moment")
        return deployment.ledger, deployment.operator

    def _wake(self) -> None:
        relay = self.runtime.extras.get("relay")
        if relay is not None:
            relay.wake()

    def _in_progress(self) -> RewardEpoch | None:
        with Session(self.engine) as session:
            return session.exec(
                select(RewardEpoch).where(RewardEpoch.status.in_(IN_PROGRESS)).order_by(RewardEpoch.number)  # type: ignore[attr-defined]
            ).first()

    def _due(self, now: datetime) -> bool:
        """An epoch is due `epoch_seconds` after the last close, or after the oldest open record if none closed."""
        with Session(self.engine) as session:
            since = session.exec(select(func.max(RewardEpoch.closed_at))).one()
            if since is None:
                since = session.exec(
                    select(func.min(InferenceRecordRow.created_at)).where(InferenceRecordRow.epoch.is_(None))  # type: ignore[union-attr]
                ).one()
        return since is not None and now - aware(since) >= timedelta(seconds=self.settings.epoch_seconds)

    # A payer's reason not to be charged (None: can pay); an attribute so tests can stand in for the chain reads.
    _cannot_pay = staticmethod(payment_refusal)

    @staticmethod
    def _mark_records(session: Session, number: int, payer: str, status: str, reason: str | None) -> None:
        session.exec(
            update(InferenceRecordRow)
            .where(InferenceRecordRow.epoch == number, InferenceRecordRow.payer == payer)
            .values(charge_status=status, charge_reason=reason)
        )

    def _collect_charges(self, number: int) -> bool:
        """True once every charge of the epoch is final; confirmed ones mark their records paid, failed ones unpaid."""
        with session_scope(self.engine) as session:
            charges = session.exec(
                select(EpochCharge).where(EpochCharge.epoch == number, EpochCharge.status == ChargeStatus.PENDING)
            ).all()
            entries = {charge.payer: session.get(OutboxEntry, charge.outbox_id) for charge in charges}
            if any(entry is not None and entry.status in UNFINISHED for entry in entries.values()):
                return False
            for charge in charges:
                entry = entries[charge.payer]
                if entry is not None and entry.status == OutboxStatus.CONFIRMED:
                    charge.status = ChargeStatus.PAID
                else:
                    charge.status = ChargeStatus.UNPAID
                    error = entry.last_error if entry else "its outbox row is gone"
                    charge.reason = f"the transfer failed: {error}"[:MAX_REASON]
                session.add(charge)
            paid = session.exec(
                select(EpochCharge.payer).where(EpochCharge.epoch == number, EpochCharge.status == ChargeStatus.PAID)
            ).all()
            for payer in paid:
                self._mark_records(session, number, payer, ChargeStatus.PAID, None)
            for charge in charges:
                if charge.status == ChargeStatus.UNPAID:
                    self._mark_records(session, number, charge.payer, ChargeStatus.UNPAID, charge.reason)
        return True

    def _enqueue_commit(
        self,
        session: Session,
        ledger: Ledger,
        epoch: RewardEpoch,
        totals: EpochTotals,
        need_commit: bool,
        need_root: bool,
    ) -> None:
        assert epoch.records_root and epoch.payouts_root and epoch.previous_root
        ref = f"{epoch.number}" + (f":retry{epoch.attempt}" if epoch.attempt else "")
        uri = f"{self.runtime.settings.public_url}/services/platform/api/rewards/epochs/{epoch.number}"
        if need_commit:
            block, digest = epoch.parameters_block or 0, epoch.parameters_hash or ZERO_ROOT
            call = ledger.attribution.commit_epoch(
                epoch.number, epoch.records_root, epoch.payouts_root, totals, uri, block, digest
            )
            entry = enqueue(session, call, signer=OPERATOR, kind="rewards.commit", ref=ref)
            session.flush()
            epoch.commit_outbox_id = entry.id
        if need_root:
            call = ledger.distributor.set_root(epoch.payouts_root, epoch.previous_root)
            entry = enqueue(session, call, signer=OPERATOR, kind="rewards.root", ref=ref)
            session.flush()
            epoch.root_outbox_id = entry.id

    def _set_status(self, number: int, expected: str, status: str, settled: bool = False) -> bool:
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is None or epoch.status != expected:
                return False
            epoch.status = status
            if settled:
                epoch.settled_at = datetime.now(UTC)
        log.info("rewards: epoch %d is %s", number, status)
        return True

    def _note_error(self, number: int, message: str) -> None:
        with session_scope(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            if epoch is not None and epoch.error != message[:MAX_REASON]:
                epoch.error = message[:MAX_REASON]
                log.error("rewards: epoch %d blocked: %s", number, message)
