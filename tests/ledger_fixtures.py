"""Fixtures for the ledger tests: a real anvil per test module and the contracts deployed on it.

Use them in a test module with `anvil_node = ledger_fixtures.anvil_node` (an assignment keeps ruff's F811 quiet).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from hub.chain.anvil import AnvilNode, rpc_call, start_anvil
from hub.ledger.contracts import Ledger
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ledger_settings(data_dir: Path, node: AnvilNode) -> Settings:
    """Settings pointing at `node` with its own data dir (no settings file is read)."""
    return Settings(
        settings_file=data_dir / "openledger.toml",
        paths={"data_dir": data_dir},
        chain={"rpc_url": node.rpc_url, "chain_id": node.chain_id, "anvil_port": int(node.rpc_url.rsplit(":", 1)[1])},
    )


def fund(node: AnvilNode, address: str, wei: int = 10**20) -> None:
    rpc_call(node.rpc_url, "anvil_setBalance", [address, hex(wei)])


@pytest.fixture(scope="module")
def anvil_node() -> Iterator[AnvilNode]:
    node = start_anvil(free_port())
    try:
        yield node
    finally:
        node.stop()


@dataclass
class LedgerEnv:
    node: AnvilNode
    settings: Settings
    ledger: Ledger
    deployer: LocalAccount  # admin everywhere
    operator: LocalAccount  # registrar, attestor, minter
    outsider: LocalAccount  # funded, no roles


@pytest.fixture(scope="module")
def ledger_env(anvil_node: AnvilNode, tmp_path_factory: pytest.TempPathFactory) -> LedgerEnv:
    settings = ledger_settings(tmp_path_factory.mktemp("ledger-data"), anvil_node)
    operator, outsider = Account.create(), Account.create()
    fund(anvil_node, operator.address)
    fund(anvil_node, outsider.address)
    # rpc_url is set, so the default key source would be a key file: name anvil's dev account explicitly.
    deployment = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address)
    return LedgerEnv(anvil_node, settings, deployment.ledger, deployment.deployer, operator, outsider)
