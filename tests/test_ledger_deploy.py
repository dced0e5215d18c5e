"""Deploy-or-attach: first start deploys, later ones attach, a reset chain redeploys; bad settings fail clearly."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from hub.chain.anvil import start_anvil
from hub.ledger.contracts import ATTESTOR_ROLE
from hub.ledger.deploy import default_key_source, deploy_or_attach
from hub.ledger.errors import (
    ChainUnreachableError,
    DeploymentError,
    InsufficientFundsError,
    LedgerError,
    WrongChainError,
)
from hub.ledger.keys import AnvilDevKey, DevChainKeyFile, KeyFile
from hub.settings import Settings
from tests import ledger_fixtures
from tests.ledger_fixtures import free_port, fund, ledger_settings

anvil_node = ledger_fixtures.anvil_node


def test_deploy_then_attach_across_restart_then_redeploy_after_reset(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "anvil-state.json"
    node = start_anvil(port, state_file=state)
    settings = ledger_settings(tmp_path / "data", node)
    try:
        first = deploy_or_attach(settings, key_source=AnvilDevKey(0))
        assert first.status == "deployed"
        assert first.path == tmp_path / "data" / "chain" / "31337" / "deployments.json"
        recorded = json.loads(first.path.read_text())
        assert recorded["contracts"] == first.ledger.addresses and recorded["deployer"] == first.deployer.address
        assert first.ledger.attribution.has_role("attestor", first.deployer.address)
        assert first.ledger.token.has_role("minter", first.deployer.address)
        assert first.ledger.datanets.has_role("admin", first.deployer.address)
    finally:
        node.stop()  # SIGTERM: anvil dumps its state file

    node = start_anvil(port, state_file=state)
    try:
        again = deploy_or_attach(settings, key_source=AnvilDevKey(0))
        assert again.status == "attached" and again.ledger.addresses == first.ledger.addresses
    finally:
        node.stop()

    state.unlink()  # a reset dev chain: same port, empty state
    node = start_anvil(port)
    try:
        fresh = deploy_or_attach(settings, key_source=AnvilDevKey(0))
        assert fresh.status == "redeployed" and "was reset" in fresh.message
        for contract in fresh.ledger.contracts():
            assert len(fresh.ledger.w3.eth.get_code(contract.address)) > 0
    finally:
        node.stop()


def test_operator_roles_granted_on_attach(anvil_node, tmp_path: Path) -> None:  # noqa: ANN001
    settings = ledger_settings(tmp_path, anvil_node)
    deploy_or_attach(settings, key_source=AnvilDevKey(0))
    operator = "0x" + "42" * 20
    attached = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator)
    assert attached.status == "attached"
    assert attached.ledger.attribution.view("hasRole", ATTESTOR_ROLE, attached.operator)
    assert attached.ledger.models.has_role("registrar", operator)


def test_wrong_chain_id(anvil_node, tmp_path: Path) -> None:  # noqa: ANN001
    settings = ledger_settings(tmp_path, anvil_node)
    settings.chain.chain_id = 161201
    with pytest.raises(WrongChainError, match="is chain id 31337, but the settings say 161201"):
        deploy_or_attach(settings, key_source=AnvilDevKey(0))
    assert not (tmp_path / "chain" / "161201" / "deployments.json").exists()


def test_unreachable_rpc(tmp_path: Path) -> None:
    settings = Settings(
        settings_file=tmp_path / "x.toml",
        paths={"data_dir": tmp_path},
        chain={"rpc_url": f"http://user:secret@127.0.0.1:{free_port()}/key123", "chain_id": 31337},
    )
    with pytest.raises(ChainUnreachableError, match="cannot reach the chain's JSON-RPC at http://127.0.0.1:") as info:
        deploy_or_attach(settings)
    assert "secret" not in str(info.value) and "key123" not in str(info.value)


def test_key_file_source_unfunded_then_funded(anvil_node, tmp_path: Path) -> None:  # noqa: ANN001
    settings = ledger_settings(tmp_path, anvil_node)  # rpc_url set: not the embedded chain
    source = default_key_source(settings)
    assert isinstance(source, KeyFile) and source.path == tmp_path / "chain" / "31337" / "deployer.key"
    with pytest.raises(DeploymentError, match="cannot pay for gas") as info:
        deploy_or_attach(settings)
    assert isinstance(info.value.__cause__, InsufficientFundsError)
    assert stat.S_IMODE(source.path.stat().st_mode) == 0o600
    assert not (tmp_path / "chain" / "31337" / "deployments.json").exists()

    deployer = source.load(None)
    fund(anvil_node, deployer.address)
    deployment = deploy_or_attach(settings)
    assert deployment.status == "deployed" and deployment.deployer.address == deployer.address


def test_key_sources() -> None:
    embedded = Settings(settings_file=Path("/nonexistent/x.toml"), chain={"rpc_url": ""})
    # The embedded chain's admin is a generated key in the key store, never anvil's public dev account.
    assert default_key_source(embedded) == DevChainKeyFile(
        Path("/nonexistent/.openledger-data/chain/31337/deployer.key")
    )
    with pytest.raises(LedgerError, match="not anvil"):
        AnvilDevKey(0).load(SimpleNamespace(client_version="Geth/v1.14.0"))
    dev = AnvilDevKey(0).load(SimpleNamespace(client_version="anvil/v1.7.1"))
    assert dev.address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's well-known account #0
