"""The relay worker of one signer: nonces, signing, broadcast, receipts, fee bumps, restart reconciliation.

Only one worker per signer and chain may run at a time (hub.relay.service holds a lease for it), so nonces are
assigned here without asking anyone: the next nonce is max(the node's pending count, the highest nonce held by an
unfinished row + 1). A nonce is only given to a row whose call just estimated without a revert, and every signed
transaction is written to SQL before it is broadcast, so after a crash each nonce either has its exact bytes in the
outbox (rebroadcast them) or was never used.

`step()` never blocks on a receipt: it re-checks recent confirmations (hub.relay.reconcile), settles what was mined
in a final block (hub.relay.finality), (re)broadcasts what the node does not hold yet, bumps the fee of what is stuck,
then signs and sends the next batch of pending rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from eth_account.signers.local import LocalAccount
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from web3 import Web3
from web3.exceptions import Web3RPCError

from hub.ledger.errors import ContractRevert, InsufficientFundsError, TransactionError
from hub.ledger.tx import (
    Fees,
    PreparedCall,
    build_transaction,
    estimate_gas,
    suggest_fees,
)
from hub.relay.outbox import IN_FLIGHT, OutboxEntry, OutboxStatus, utcnow
from hub.relay.outbox_rows import OutboxRows
from hub.relay.parts import (
    Failpoints,
    RelayConfig,
    WorkerStatus,
    classify_refusal,
    hex0x,
    higher_fees,
    relay_web3,
    signed_values,
)
from hub.relay.reconcile import Reconciler
from hub.relay.rpc_reads import batch_estimates, batch_receipts, diagnose_revert, node_knows, receipt_of

__all__ = ["Failpoints", "RelayConfig", "SignerWorker", "WorkerStatus", "classify_refusal", "relay_web3"]

log = logging.getLogger("hub.relay")


class SignerWorker(OutboxRows):
    """Relays the outbox rows of one signer; call `step()` in a loop (hub.relay.service does)."""

    def __init__(
        self,
        engine: Engine,
        w3: Web3,
        account: LocalAccount,
        signer: str,
        chain_id: int,
        config: RelayConfig | None = None,
        failpoints: Failpoints | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.w3 = w3
        self.account = account
        self.address = account.address
        self.signer = signer
        self.chain_id = chain_id
        self.config = config or RelayConfig()
        self.failpoints = failpoints or Failpoints()
        self.clock = clock
        self.status = WorkerStatus(signer, account.address)
        self.paused_until = 0.0
        self._fresh = True  # the first pass after a start reconciles: it rebroadcasts what the node lost
        self._orphans: dict[int, float] = {}
        self._problem = False  # set by this pass when it paused or hit an error
        self._buffer: list[tuple[int | None, dict[str, Any]]] | None = None
        self.reconciler = Reconciler(engine, w3, signer, self.config, clock)
        self._final: int | None = None  # the final block number, looked up at most once per pass

    def reset(self) -> None:
        """Forget what this process knew (it may not have led for a while): the next pass starts like a restart."""
        self._fresh = True
        self._orphans.clear()
        self.paused_until = 0.0

    # One pass --------------------------------------------------------------------------------------------------
    def step(self) -> bool:
        """One pass over this signer's rows; True when it should run again soon (work done or in flight)."""
        self._problem = False
        self._final = None
        self.status.awaiting_finality = 0
        if self.reconciler.check():
            self._fresh = True  # history was rewritten: rebroadcast what the node no longer holds
            self.status.requeued = self.reconciler.requeued
        in_flight = self._rows(IN_FLIGHT, order_by_nonce=True)
        if in_flight:
            with self._batched():
                self._advance(in_flight)
        self._fresh = False
        if self.clock() < self.paused_until:
            return bool(in_flight)
        with self._batched():
            worked = self._send_pending()
        if not self._problem and self.clock() >= self.paused_until:
            # Nothing went wrong this pass: a pause or error reported earlier is over.
            self.status.set("running" if worked or in_flight else "idle")
        return worked or bool(in_flight)

    # In-flight rows --------------------------------------------------------------------------------------------
    def _advance(self, rows: list[OutboxEntry]) -> None:
        mined_below = self.w3.eth.get_transaction_count(self.address, "latest")
        receipts = batch_receipts(self.w3, [row for row in rows if row.nonce is not None and row.nonce < mined_below])
        sent: list[int] = []
        for row in rows:
            assert row.nonce is not None and row.id is not None
            if row.nonce < mined_below:
                if row.id in receipts:
                    self._orphans.pop(row.id, None)
                    self._finish(row, str(row.tx_hash), receipts[row.id])
                else:
                    self._settle(row)
            elif row.status == OutboxStatus.SIGNED:
                if not self._broadcast(row, sent):
                    break  # paused or refused: later nonces would only queue behind this one
            elif self._fresh and not node_knows(self.w3, row.tx_hash):
                self._broadcast(row, sent)  # restarted and the node lost it (node restart, dropped): same bytes again
            elif row.sent_at is None or utcnow() - row.sent_at > timedelta(seconds=self.config.stuck_after):
                self._bump(row, sent)
        self._mark_sent(sent)

    def _settle(self, row: OutboxEntry) -> None:
        """The row's nonce is used on chain: find which of its transactions was mined, or re-queue it."""
        for tx_hash in row.all_hashes():
            receipt = receipt_of(self.w3, tx_hash)
            if receipt is not None:
                self._orphans.pop(row.id, None)
                self._finish(row, tx_hash, receipt)
                return
        # Another transaction of this key (sent outside the relay) took the nonce: none of ours can be mined any
        # more. Wait a little first, a lagging node may index the receipt after the nonce.
        first_seen = self._orphans.setdefault(row.id, self.clock())
        if self.clock() - first_seen < self.config.orphan_grace:
            return
        self._orphans.pop(row.id, None)
        message = f"nonce {row.nonce} of {self.address} was used by a transaction not sent by this relay; re-queued"
        log.warning("relay %s: outbox row %s: %s", self.signer, row.id, message)
        self._save(
            row.id,
            status=OutboxStatus.PENDING,
            nonce=None,
            raw_tx=None,
            tx_hash=None,
            previous_hashes="",
            sent_at=None,
            last_error=message,
        )

    def _final_block(self) -> int:
        if self._final is None:
            self._final = self.config.finality.final_block(self.w3)
        return self._final

    def _finish(self, row: OutboxEntry, tx_hash: str, receipt: Any) -> None:
        if receipt["blockNumber"] > self._final_block():
            self.status.awaiting_finality += 1  # stays in flight; the next pass looks again
            return
        done = {
            "tx_hash": tx_hash,
            "receipt_block": receipt["blockNumber"],
            "receipt_block_hash": hex0x(receipt["blockHash"]),
            "gas_used": receipt["gasUsed"],
        }
        if receipt["status"] == 1:
            self._save(row.id, status=OutboxStatus.CONFIRMED, confirmed_at=utcnow(), last_error=None, **done)
            self.status.confirmed += 1
            return
        error = diagnose_revert(self.w3, self.address, row, tx_hash, receipt)
        if error.already_done:
            # A retried write that was already on chain (its first transaction, or someone else's): success.
            note = f"already on chain ({error.error_name}); transaction {tx_hash} reverted as a duplicate"
            self._save(row.id, status=OutboxStatus.CONFIRMED, confirmed_at=utcnow(), last_error=note, **done)
            self.status.confirmed += 1
            return
        self._fail(row.id, error, **done)

    def _broadcast(self, row: OutboxEntry, sent: list[int], retry_underpriced: bool = True) -> bool:
        """Send the row's stored raw transaction; True when a node holds it now (appended to `sent`)."""
        assert row.raw_tx is not None and row.id is not None
        try:
            self.w3.eth.send_raw_transaction(row.raw_tx)
        except Web3RPCError as err:
            reason = classify_refusal(err)
            if reason == "unfunded":
                self._pause(self._unfunded_message(row.max_cost()))
                return False
            if reason == "underpriced" and retry_underpriced:
                return self._bump(row, sent)
            if reason not in ("known", "nonce_low"):  # nonce_low: mined already; the next pass settles it
                self._error(row, f"the node refused the transaction: {err}")
                return False
        self.failpoints.hit("broadcast")
        sent.append(row.id)
        self.status.sent += 1
        return True

    def _bump(self, row: OutboxEntry, sent: list[int]) -> bool:
        """Replace a stuck or dropped transaction: same nonce, higher fees, stored before it is broadcast."""
        bumps = len(row.all_hashes()) - 1
        if bumps >= self.config.max_fee_bumps:
            self._error(row, f"not mined after {bumps} fee bumps (nonce {row.nonce}); still waiting")
            return False
        fees = higher_fees(row.fees(), suggest_fees(self.w3), self.config.fee_bump_percent)
        assert row.nonce is not None and row.gas is not None
        signed = self._sign(row.prepared_call(), row.nonce, row.gas, fees)
        earlier = ",".join(h for h in (row.previous_hashes, row.tx_hash) if h)
        values = signed_values(signed, fees) | {"previous_hashes": earlier, "attempts": row.attempts + 1}
        self._write_now([(row.id, values)])  # stored before it is broadcast
        log.info("relay %s: outbox row %s: fee bump %d, nonce %s, %s", self.signer, row.id, bumps + 1, row.nonce, fees)
        for key, value in values.items():
            setattr(row, key, value)
        return self._broadcast(row, sent, retry_underpriced=False)

    # New rows --------------------------------------------------------------------------------------------------
    def _send_pending(self) -> bool:
        in_flight = self._rows(IN_FLIGHT)
        room = self.config.batch_size - len(in_flight)
        if room <= 0:
            return False
        rows = self._rows((OutboxStatus.PENDING,), limit=room)
        if not rows:
            return False
        self.status.set("running")
        prepared: list[tuple[OutboxEntry, int]] = []
        finished = False
        estimates = batch_estimates(self.w3, rows, self.address)
        for row in rows:
            call = row.prepared_call()
            try:
                gas = estimates[row.id] if row.id in estimates else estimate_gas(self.w3, call, self.address)
            except ContractRevert as err:
                if err.already_done:
                    finished = self._confirm_already_done(row, err) or finished
                    continue
                if in_flight or prepared:
                    break  # it may depend on a write still in flight (create, then publish): retry once mined
                self._fail(row.id, err)
                finished = True
                continue
            except InsufficientFundsError:
                self._pause(self._unfunded_message(None))
                break
            except TransactionError as err:
                self._error(row, str(err))
                break
            prepared.append((row, gas))
        if not prepared:
            return finished
        return self._sign_and_send(prepared, in_flight) or finished

    def _confirm_already_done(self, row: OutboxEntry, err: ContractRevert) -> bool:
        """The write is on chain without a transaction of ours: confirmed once the head that shows it is final (the
        block noted is re-checked by the reconciler: if it changes, the row is looked at again)."""
        head = self.w3.eth.get_block("latest")
        if head["number"] > self._final_block():
            self.status.awaiting_finality += 1
            return False
        note = f"already on chain ({err.error_name}); no transaction sent"
        self._save(
            row.id,
            status=OutboxStatus.CONFIRMED,
            confirmed_at=utcnow(),
            last_error=note,
            receipt_block=head["number"],
            receipt_block_hash=hex0x(head["hash"]),
        )
        self.status.confirmed += 1
        return True

    def _sign_and_send(self, prepared: list[tuple[OutboxEntry, int]], in_flight: list[OutboxEntry]) -> bool:
        fees = suggest_fees(self.w3)
        budget = self.w3.eth.get_balance(self.address) - sum(row.max_cost() for row in in_flight)
        affordable: list[tuple[OutboxEntry, int]] = []
        for row, gas in prepared:
            budget -= gas * fees.max_per_gas + int(row.value)
            if budget < 0:
                break
            affordable.append((row, gas))
        if not affordable:
            row, gas = prepared[0]
            self._pause(self._unfunded_message(gas * fees.max_per_gas + int(row.value)))
            return False
        nonce = self._next_nonce()
        signed_rows: list[tuple[OutboxEntry, dict[str, Any]]] = []
        for offset, (row, gas) in enumerate(affordable):
            signed = self._sign(row.prepared_call(), nonce + offset, gas, fees)
            values = signed_values(signed, fees) | {
                "nonce": nonce + offset,
                "gas": gas,
                "chain_id": self.chain_id,
                "attempts": row.attempts + 1,
            }
            signed_rows.append((row, values))
        # One transaction for the whole batch, before anything is broadcast: after a crash every nonce handed out
        # has its exact bytes here.
        self._write_now([(row.id, values) for row, values in signed_rows])
        self.failpoints.hit("signed")
        for row, values in signed_rows:
            for key, value in values.items():
                setattr(row, key, value)
        self._mark_sent(self._batch_broadcast([row for row, _ in signed_rows]))
        if len(affordable) < len(prepared):
            self._pause(self._unfunded_message(None))
        return True

    def _next_nonce(self) -> int:
        with Session(self.engine) as session:
            held = session.exec(
                select(func.max(OutboxEntry.nonce)).where(
                    OutboxEntry.signer == self.signer,
                    OutboxEntry.status.in_(IN_FLIGHT),  # type: ignore[attr-defined]
                )
            ).one()
        pending = self.w3.eth.get_transaction_count(self.address, "pending")
        return max(pending, held + 1 if held is not None else 0)

    def _batch_broadcast(self, rows: list[OutboxEntry]) -> list[int]:
        """Send the rows' raw transactions in one JSON-RPC batch (web3 allows no sends in its batches, the provider
        does); the ids a node now holds. A refused one is sent again alone, which handles its error; resending is
        safe, the same bytes are only ever accepted once ("already imported" or "nonce too low")."""
        sent: list[int] = []
        if len(rows) == 1:
            self._broadcast(rows[0], sent)
            return sent
        answer = self.w3.provider.make_batch_request(  # type: ignore[attr-defined]
            [("eth_sendRawTransaction", [row.raw_tx]) for row in rows]
        )
        # A node without batch support answers with one error object: then each row goes alone.
        responses = answer if isinstance(answer, list) else [answer] * len(rows)
        for row, response in zip(rows, responses, strict=True):
            error = response.get("error") if isinstance(response, dict) else "no answer"
            if error is None or classify_refusal(Exception(str(error))) in ("known", "nonce_low"):
                self.failpoints.hit("broadcast")
                self.status.sent += 1
                sent.append(row.id)
            elif not self._broadcast(row, sent):
                break  # paused or refused: its error is noted; the rest waits for the next pass
        return sent

    # Helpers ---------------------------------------------------------------------------------------------------
    def _sign(self, call: PreparedCall, nonce: int, gas: int, fees: Fees) -> Any:
        tx = build_transaction(self.w3, call, self.address, nonce=nonce, gas=gas, fees=fees, chain_id=self.chain_id)
        return self.account.sign_transaction(tx)

    def _unfunded_message(self, needed: int | None) -> str:
        balance = self.w3.eth.get_balance(self.address)
        need = f", the next transaction needs up to {needed} wei" if needed else ""
        return (
            f"signer {self.signer} ({self.address}) cannot pay for gas on chain {self.chain_id}: balance {balance} wei"
            f"{need}. Send it the chain's gas token (dev chain: POST /api/admin/faucet); rows stay pending and the "
            f"relay retries every {self.config.unfunded_pause:.0f} s"
        )

    def _pause(self, message: str) -> None:
        self._problem = True
        self.paused_until = self.clock() + self.config.unfunded_pause
        self.status.set("paused", message)

    def _error(self, row: OutboxEntry, message: str) -> None:
        """A retryable problem with one row: noted on the row (once) and in the status; the row keeps its state."""
        self._problem = True
        if row.last_error != message:
            self._save(row.id, last_error=message)
            row.last_error = message
        self.status.set("error", f"outbox row {row.id}: {message}")

    def _fail(self, row_id: int | None, error: ContractRevert, **values: Any) -> None:
        self._save(row_id, status=OutboxStatus.FAILED, last_error=str(error), error_name=error.error_name, **values)
        self.status.failed += 1
        log.warning("relay %s: outbox row %s failed: %s", self.signer, row_id, error)
