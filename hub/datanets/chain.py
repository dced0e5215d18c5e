"""Datanet writes to DatanetRegistry through the relay's outbox, and users' addresses from their custodial wallets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.datanets.models import Datanet, DatanetVersion
from hub.keys.store import WalletKeyStore
from hub.keys.wallets import ensure_wallet
from hub.platform.runtime import PlatformRuntime
from hub.relay.outbox import OPERATOR, OutboxEntry, enqueue


class RegistryWriter:
    """Enqueues createDatanet / publishVersion in the caller's transaction; the relay signs them as the operator.

    The ledger deployment is looked up at each call (`runtime.extras["ledger"]`), so a chain that comes up after
    the datanets feature is still used; with no ledger at all, nothing is enqueued and versions say "off".
    """

    def __init__(self, runtime: PlatformRuntime) -> None:
        self.runtime = runtime

    @property
    def _registry(self) -> Any | None:
        deployment = self.runtime.extras.get("ledger")
        return deployment.ledger.datanets if deployment is not None else None

    def create_datanet(self, session: Session, datanet: Datanet) -> int | None:
        registry = self._registry
        if registry is None:
            return None
        call = registry.create_datanet(datanet.chain_id, datanet.owner_address, datanet.metadata_hash)
        # ref = the on-chain id: enqueue is idempotent on it, so publish can safely enqueue it again.
        entry = enqueue(session, call, signer=OPERATOR, kind="datanet.create", ref=datanet.chain_id)
        session.flush()
        return entry.id

    def publish_version(self, session: Session, datanet: Datanet, version: DatanetVersion) -> int | None:
        registry = self._registry
        if registry is None:
            return None
        self.create_datanet(session, datanet)  # no-op if enqueued at creation; covers a ledger that came up later
        call = registry.publish_version(
            datanet.chain_id, version.version, version.merkle_root, version.row_count, version.counts_root
        )
        entry = enqueue(
            session, call, signer=OPERATOR, kind="datanet.publish", ref=f"{datanet.chain_id}:{version.version}"
        )
        session.flush()
        return entry.id

    def status(self, session: Session, outbox_id: int | None) -> dict[str, Any]:
        if outbox_id is None:
            return {"status": "off" if self._registry is None else "not enqueued"}
        entry = session.get(OutboxEntry, outbox_id)
        if entry is None:
            return {"status": "unknown"}
        return {"status": entry.status, "tx_hash": entry.tx_hash, "error": entry.last_error}

    def committed(self) -> None:
        relay = self.runtime.extras.get("relay")
        if relay is not None and hasattr(relay, "wake"):
            relay.wake()  # send now rather than at the relay's next idle tick


def wallet_addresses(engine: Engine, store: WalletKeyStore) -> Callable[[str], str]:
    """username → the address of their custodial wallet (created on first use). The snapshot records this address;
    a payout address the user links later is where settlement pays it."""
    cache: dict[str, str] = {}

    def address(username: str) -> str:
        if username not in cache:
            cache[username] = ensure_wallet(engine, username, store).address
        return cache[username]

    return address
