"""A small OPEN grant for every newcomer on a dev chain, so notebook 04 can pay for the model 03 published.

Once per user, ever: the mint is an outbox row with a deterministic key (`grant.welcome`, user name), so a retry, a
second replica or a restart finds the same row instead of minting again. Real chains mint nothing: there OPEN comes
from a transfer or the chain's own faucet.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from web3 import Web3

from hub.db import session_scope
from hub.keys.faucet import FaucetRefusedError, require_dev_chain, top_up_eth
from hub.keys.wallets import ensure_wallet
from hub.platform.runtime import PlatformRuntime
from hub.relay.outbox import OPERATOR, OutboxEntry, OutboxStatus, enqueue
from hub.rewards.money import open_to_wei

log = logging.getLogger(__name__)
GRANT_KIND = "grant.welcome"
GAS_WEI = 10**18  # settlement charges the payer's custodial key, which pays its own gas
WAIT_S = 10.0  # a first call waits this long for the mint, so the balance it shows next already has the grant
GRANTED = "welcome_grants"  # runtime.extras key: user names already granted (or refused) by this process


def grant_welcome_open(runtime: PlatformRuntime, username: str, wait_s: float = WAIT_S) -> str:
    """Mint the welcome grant to `username`'s wallet unless done before; returns what happened: "granted",
    "already", "off" (setting 0 or not a dev chain) or "unavailable" (no ledger yet: tried again next call)."""
    seen: set[str] = runtime.extras.setdefault(GRANTED, set())
    if username in seen:
        return "already"
    amount = open_to_wei(runtime.settings.chain.welcome_grant, "chain.welcome_grant")
    deployment, relay, keys = (runtime.extras.get(key) for key in ("ledger", "relay", "wallet_keys"))
    if amount == 0:
        seen.add(username)
        return "off"
    if deployment is None or relay is None or keys is None:
        return "unavailable"
    w3 = deployment.ledger.w3
    if not is_dev_chain(w3):
        seen.add(username)
        return "off"
    address = ensure_wallet(runtime.engine, username, keys).address
    try:
        with session_scope(runtime.engine) as session:
            query = select(OutboxEntry).where(OutboxEntry.kind == GRANT_KIND, OutboxEntry.ref == username)
            if session.exec(query).first() is not None:
                seen.add(username)
                return "already"
            top_up_eth(w3, address, GAS_WEI)
            entry = enqueue(session, deployment.ledger.token.mint(address, amount), signer=OPERATOR, kind=GRANT_KIND,
                            ref=username)  # fmt: skip
            session.flush()
            outbox_id = entry.id
    except IntegrityError:  # a concurrent first call enqueued it a moment ago: that one is the grant
        seen.add(username)
        return "already"
    seen.add(username)
    relay.wake()
    log.info("welcome grant: %s OPEN to %s (%s)", runtime.settings.chain.welcome_grant, username, address)
    _wait_confirmed(runtime, outbox_id, wait_s)
    return "granted"


def is_dev_chain(w3: Web3) -> bool:
    try:
        require_dev_chain(w3)
    except FaucetRefusedError:
        return False
    return True


def _wait_confirmed(runtime: PlatformRuntime, outbox_id: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        with Session(runtime.engine) as session:
            entry = session.get(OutboxEntry, outbox_id)
            if entry is None or entry.status in (OutboxStatus.CONFIRMED, OutboxStatus.FAILED):
                return
        time.sleep(0.1)
