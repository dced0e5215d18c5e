"""Datanet writes to DatanetRegistry through the relay's outbox, and users' addresses from their custodial wallets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.datanets.models import Datanet, DatanetVersion
from hub.keys.store import WalletKeyStore
from hub.keys.wallets import ensure_wallet
from hub.platform.relay_writes import RelayWriter
from hub.relay.outbox import OPERATOR, enqueue


class RegistryWriter(RelayWriter):
    """Enqueues createDatanet / publishVersion in the caller's transaction; the relay signs them as the operator.

    The ledger deployment is looked up at each call (`runtime.extras["ledger"]`), so a chain that comes up after
    the datanets feature is still used; with no ledger at all, nothing is enqueued and versions say "off".
    """

    @property
    def _registry(self) -> Any | None:
        ledger = self.ledger
        return ledger.datanets if ledger is not None else None

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


def wallet_addresses(engine: Engine, store: WalletKeyStore) -> Callable[[str], str]:
    """username → the address of their custodial wallet (created on first use). The snapshot records this address;
    a payout address the user links later is where settlement pays it."""
    cache: dict[str, str] = {}

    def address(username: str) -> str:
        if username not in cache:
            cache[username] = ensure_wallet(engine, username, store).address
        return cache[username]

    return address
