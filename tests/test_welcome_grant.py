"""The welcome grant refuses real chains: only a dev node (anvil) mints OPEN out of nothing.

A real chain cannot run here, so its node is stood in by an object that answers `client_version` like geth does;
everything else (the database, the outbox) is real. The dev-chain side is tested end to end in test_first_run.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

from sqlmodel import Session, select

from hub.db import make_engine, migrate
from hub.platform.runtime import PlatformRuntime
from hub.platform.welcome_grant import GRANT_KIND, grant_welcome_open
from hub.relay.outbox import OutboxEntry
from hub.settings import load_settings
from tests.hub_harness import write_settings


def runtime_on(tmp_path: Path, client_version: str, grant: str = "20") -> PlatformRuntime:
    settings = load_settings(write_settings(tmp_path, chain={"welcome_grant": grant}))
    assert settings.chain.welcome_grant == Decimal(grant)
    w3 = SimpleNamespace(client_version=client_version, eth=SimpleNamespace(chain_id=1))
    ledger = SimpleNamespace(ledger=SimpleNamespace(w3=w3))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    runtime = PlatformRuntime(settings=settings, engine=engine)
    runtime.extras.update(ledger=ledger, relay=object(), wallet_keys=object())
    return runtime


def grants(runtime: PlatformRuntime) -> list[OutboxEntry]:
    with Session(runtime.engine) as session:
        return list(session.exec(select(OutboxEntry).where(OutboxEntry.kind == GRANT_KIND)))


def test_no_grant_on_a_real_chain(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path, "Geth/v1.14.11-stable/linux-amd64/go1.22.8")
    assert grant_welcome_open(runtime, "alice") == "off"
    assert grant_welcome_open(runtime, "alice") == "already"
    assert grants(runtime) == []


def test_grant_zero_mints_nothing_even_on_anvil(tmp_path: Path) -> None:
    runtime = runtime_on(tmp_path, "anvil/v1.7.1", grant="0")
    assert grant_welcome_open(runtime, "alice") == "off"
    assert grants(runtime) == []
