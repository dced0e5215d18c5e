"""What the settlement tests share: a migrated SQLite platform database, its wallet keys, and a `Settler` that sends
through a real relay (fast polling) to the contracts of a `LedgerEnv`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy.engine import Engine

from hub.db import make_engine, migrate
from hub.keys.store import WalletKeyStore
from hub.platform.runtime import PlatformRuntime
from hub.relay.service import RelayService
from hub.relay.signers import KeyRing
from hub.relay.worker import RelayConfig
from hub.rewards.config import RewardSettings
from hub.rewards.settlement import Settler
from tests.ledger_fixtures import LedgerEnv

FAST = RelayConfig(batch_size=20, poll_interval=0.01, idle_interval=0.05, stuck_after=30, orphan_grace=0)


@dataclass
class SettlementParts:
    engine: Engine
    wallets: WalletKeyStore
    settler: Settler


@contextmanager
def settlement_parts(env: LedgerEnv, directory: Path, settings: RewardSettings) -> Iterator[SettlementParts]:
    """The database in `directory`, its wallet keys, and a Settler whose relay runs until the block exits."""
    engine = make_engine(f"sqlite:///{directory / 'platform.sqlite'}")
    migrate(engine)
    wallets = WalletKeyStore.for_data_dir(directory)
    keys = KeyRing(engine, env.operator, wallets)
    relay = RelayService(engine, env.node.rpc_url, env.node.chain_id, keys, directory / "relay", FAST)
    relay.start()
    deployment = SimpleNamespace(ledger=env.ledger, operator=env.operator.address)
    runtime = PlatformRuntime(env.settings, engine, {"ledger": deployment, "relay": relay})
    try:
        yield SettlementParts(engine, wallets, Settler(runtime, settings))
    finally:
        relay.stop()
        engine.dispose()
