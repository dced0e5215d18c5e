"""Re-verify what the relay confirmed: a reorg, or an embedded chain restarted from older state, can erase a write
after its row said `confirmed`.

Each signer's worker asks `Reconciler.check()` once per pass. It watches the head (number and hash): a head that went
backwards, or a block at a seen height whose hash changed, means history was rewritten. Then, and every
`reverify_interval` seconds anyway, every row confirmed within the last `reverify_seconds` is checked: its block must
still carry the hash noted at confirmation. A row whose block changed and whose receipt is gone goes back in the queue:
`signed` with its stored raw transaction when it has one (the same nonce and bytes: it can only ever be mined once),
else `pending` (a write found already on chain without a transaction of ours, re-checked from scratch). The contracts
reject duplicate record ids, so a re-sent write that did survive somewhere is confirmed as already done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from web3 import Web3
from web3.exceptions import BlockNotFound

from hub.db import session_scope
from hub.relay.outbox import OutboxEntry, OutboxStatus, utcnow
from hub.relay.parts import RelayConfig, hex0x
from hub.relay.rpc_reads import receipt_of

log = logging.getLogger("hub.relay")


BATCH = 200  # block lookups per JSON-RPC batch


def block_hashes(w3: Web3, numbers: list[int]) -> dict[int, str | None]:
    """The hash of each block number on the node now (None: no such block), in batches where the node allows."""
    found: dict[int, str | None] = {}
    for start in range(0, len(numbers), BATCH):
        chunk = numbers[start : start + BATCH]
        try:
            with w3.batch_requests() as batch:
                for number in chunk:
                    batch.add(w3.eth.get_block(number))
                blocks = batch.execute()
            found |= {n: hex0x(b["hash"]) if b else None for n, b in zip(chunk, blocks, strict=True)}
        except Exception:  # noqa: BLE001 - a missing block fails the whole batch: one by one then
            found |= {number: _one_hash(w3, number) for number in chunk}
    return found


def _one_hash(w3: Web3, number: int) -> str | None:
    try:
        return hex0x(w3.eth.get_block(number)["hash"])
    except BlockNotFound:
        return None


class Reconciler:
    def __init__(self, engine: Engine, w3: Web3, signer: str, config: RelayConfig, clock: Callable[[], float]) -> None:
        self.engine, self.w3, self.signer, self.config, self.clock = engine, w3, signer, config, clock
        self._head: tuple[int, str] | None = None
        self._next_head_look = 0.0
        self._next_verify = 0.0
        self.requeued = 0  # rows put back in the queue since start (for the status)

    def check(self) -> bool:
        """True when history was rewritten or a confirmed write was lost: the worker then rebroadcasts what the node
        no longer holds."""
        now = self.clock()
        rewound = False
        if now >= self._next_head_look:
            self._next_head_look = now + self.config.head_check_interval
            rewound = self._head_went_back()
        if not rewound and now < self._next_verify:
            return False
        self._next_verify = now + self.config.reverify_interval
        return self._verify() > 0 or rewound

    def _head_went_back(self) -> bool:
        head = self.w3.eth.get_block("latest")
        number, hash_ = int(head["number"]), hex0x(head["hash"])
        previous, self._head = self._head, (number, hash_)
        if previous is None:
            return False
        seen_number, seen_hash = previous
        if number < seen_number:
            log.warning("relay %s: the chain head went back from block %d to %d", self.signer, seen_number, number)
            return True
        now_hash = hash_ if number == seen_number else _one_hash(self.w3, seen_number)
        if now_hash != seen_hash:
            log.warning("relay %s: block %d changed its hash (reorg or chain restart)", self.signer, seen_number)
            return True
        return False

    def _verify(self) -> int:
        """Check the rows confirmed within the window; put back the lost ones. How many were put back."""
        since = utcnow() - timedelta(seconds=self.config.reverify_seconds)
        with Session(self.engine) as session:
            rows = list(
                session.exec(
                    select(OutboxEntry).where(
                        OutboxEntry.signer == self.signer,
                        OutboxEntry.status == OutboxStatus.CONFIRMED,
                        OutboxEntry.confirmed_at >= since,  # type: ignore[operator]
                        OutboxEntry.receipt_block.is_not(None),  # type: ignore[union-attr]
                    )
                )
            )
            session.expunge_all()
        if not rows:
            return 0
        hashes = block_hashes(
            self.w3, sorted({int(row.receipt_block) for row in rows if row.receipt_block is not None})
        )
        changes: list[tuple[int | None, dict[str, Any]]] = []
        for row in rows:
            assert row.receipt_block is not None
            if row.receipt_block_hash is not None and hashes[row.receipt_block] == row.receipt_block_hash:
                continue
            if row.receipt_block_hash is None and (row.tx_hash is None or hashes[row.receipt_block] is not None):
                continue  # confirmed before block hashes were kept: only a missing block can be judged
            change = self._recheck(row)
            if change is not None:
                changes.append((row.id, change))
        self._write(changes)
        lost = sum(1 for _, change in changes if change.get("status") != OutboxStatus.CONFIRMED)
        self.requeued += lost
        return lost

    def _recheck(self, row: OutboxEntry) -> dict[str, Any] | None:
        """New values for a row whose block changed: re-included elsewhere (kept confirmed), or back in the queue."""
        if row.tx_hash is not None:
            receipt = receipt_of(self.w3, row.tx_hash)
            if receipt is not None and receipt["status"] == 1:
                # Re-mined in another block (a reorg that kept it): note where; finality is checked again there.
                return {"receipt_block": receipt["blockNumber"], "receipt_block_hash": hex0x(receipt["blockHash"])}
        lost_from = f"block {row.receipt_block} ({row.receipt_block_hash or 'hash unknown'})"
        back = {
            "confirmed_at": None,
            "receipt_block": None,
            "receipt_block_hash": None,
            "gas_used": None,
            "sent_at": None,
        }
        if row.raw_tx is not None:
            message = f"the chain lost this write from {lost_from}: re-sent with the same signed transaction"
            back |= {"status": OutboxStatus.SIGNED, "last_error": message}
        else:
            message = f"the chain lost the state that made this write already done ({lost_from}): checked again"
            back |= {"status": OutboxStatus.PENDING, "nonce": None, "tx_hash": None, "last_error": message}
        log.warning("relay %s: outbox row %s (%s %s): %s", self.signer, row.id, row.kind, row.ref, message)
        return back

    def _write(self, changes: list[tuple[int | None, dict[str, Any]]]) -> None:
        if not changes:
            return
        with session_scope(self.engine) as session:
            for row_id, values in changes:
                row = session.get(OutboxEntry, row_id)
                if row is not None and row.status == OutboxStatus.CONFIRMED:  # unchanged since it was read
                    for key, value in values.items():
                        setattr(row, key, value)
                    row.updated_at = utcnow()
