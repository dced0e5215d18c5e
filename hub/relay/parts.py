"""What the relay worker is built from: its settings, its status, crash failpoints and small pure helpers."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from web3 import Web3

from hub.ledger.provider import make_provider
from hub.ledger.tx import Fees
from hub.relay.finality import DepthFinality, Finality

log = logging.getLogger("hub.relay")


@dataclass(frozen=True)
class RelayConfig:
    batch_size: int = 50  # transactions in flight per signer at most; also the rows signed per pass
    poll_interval: float = 0.1  # seconds between passes while transactions are in flight
    idle_interval: float = 0.5  # seconds between looks at the outbox when there is nothing to do
    stuck_after: float = 60.0  # seconds a sent transaction may stay unmined before its fee is bumped
    fee_bump_percent: int = 12  # nodes want at least +10% on both fees to replace a transaction
    max_fee_bumps: int = 8
    orphan_grace: float = 5.0  # seconds a used-up nonce without our receipt is watched before the row is re-queued
    unfunded_pause: float = 5.0  # seconds to wait before retrying when the signer cannot pay for gas
    # A mined write is confirmed only in a final block (hub.relay.finality); the default counts the head as final.
    finality: Finality = DepthFinality(0)
    reverify_seconds: float = 900.0  # confirmed rows younger than this are re-checked against the chain ...
    reverify_interval: float = 30.0  # ... this often, and at once when the head went back
    head_check_interval: float = 0.5  # seconds between looks at the head for a rewind


@dataclass
class WorkerStatus:
    """What a worker is doing, for /api/ledger and the logs."""

    signer: str
    address: str
    state: str = "starting"  # starting | idle | running | paused | error | locked | stopped
    message: str = ""
    since: float = field(default_factory=time.time)
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    awaiting_finality: int = 0  # mined, not final yet (last pass)
    requeued: int = 0  # confirmed writes the chain lost, put back in the queue since start

    def set(self, state: str, message: str = "") -> None:
        if (state, message) != (self.state, self.message):
            if state in ("paused", "error", "locked"):
                log.warning("relay %s: %s: %s", self.signer, state, message)
            self.state, self.message, self.since = state, message, time.time()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Failpoints:
    """Crash injection for the kill tests: OPENLEDGER_RELAY_FAILPOINT=<point>:<n> SIGKILLs this process at the n-th
    time it passes <point> ("signed": after a batch was stored signed, before its broadcast; "broadcast": after a
    node accepted a transaction, before the row says so)."""

    def __init__(self, spec: str | None = None) -> None:
        spec = os.environ.get("OPENLEDGER_RELAY_FAILPOINT", "") if spec is None else spec
        point, _, count = spec.partition(":")
        self.point, self.remaining = (point, int(count or 1)) if point else ("", 0)

    def hit(self, point: str) -> None:
        if point == self.point:
            self.remaining -= 1
            if self.remaining <= 0:
                log.warning("relay failpoint %s reached: SIGKILL", point)
                os.kill(os.getpid(), signal.SIGKILL)


def classify_refusal(err: Exception) -> str:
    """Why a node refused a raw transaction: known | nonce_low | unfunded | underpriced | other."""
    text = str(err).lower()
    if "already imported" in text or "already known" in text or "known transaction" in text:
        return "known"
    if "nonce too low" in text or "nonce is too low" in text:
        return "nonce_low"
    if "insufficient funds" in text:
        return "unfunded"
    if "underpriced" in text or "fee too low" in text or "less than block base fee" in text or "fee cap" in text:
        return "underpriced"
    return "other"


def relay_web3(rpc_url: str, timeout: float = 30) -> Web3:
    """A Web3 for a worker. Without web3's validation middleware, which asks the node for its chain id before every
    estimate (a third of all requests): the chain id was checked at start, and each transaction is signed with it."""
    w3 = Web3(make_provider(rpc_url, timeout))
    w3.middleware_onion.remove("validation")
    return w3


def hex0x(data: bytes) -> str:
    return "0x" + bytes(data).hex()


def higher_fees(previous: Fees, suggested: Fees, percent: int) -> Fees:
    """A replacement's fees: the old ones bumped, or today's suggestion where that is higher."""
    bumped = previous.bumped(percent)
    if bumped.gas_price is not None or suggested.gas_price is not None:
        return Fees(gas_price=max(bumped.gas_price or 0, suggested.gas_price or 0))
    return Fees(
        max_fee_per_gas=max(bumped.max_fee_per_gas or 0, suggested.max_fee_per_gas or 0),
        max_priority_fee_per_gas=max(bumped.max_priority_fee_per_gas or 0, suggested.max_priority_fee_per_gas or 0),
    )


def signed_values(signed: Any, fees: Fees) -> dict[str, Any]:
    """The outbox columns of a freshly signed transaction (stored before it is broadcast)."""
    return {
        "status": "signed",
        "raw_tx": hex0x(signed.raw_transaction),
        "tx_hash": hex0x(signed.hash),
        "max_fee_per_gas": fees.max_fee_per_gas,
        "max_priority_fee_per_gas": fees.max_priority_fee_per_gas,
        "gas_price": fees.gas_price,
    }
