"""The ledger feature in the platform app without the hub: what its routes say while the chain is missing or wrong."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hub.auth import HubUser, current_user
from hub.chain.anvil import AnvilNode, start_anvil
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.platform import ledger_feature
from hub.platform.app import create_app
from hub.relay.signers import load_operator
from hub.settings import Settings
from tests import ledger_fixtures
from tests.ledger_fixtures import free_port

anvil_node = ledger_fixtures.anvil_node

ALICE = HubUser("alice", False, (), frozenset({"access:services"}), "user")


def wait_for_detail(client: TestClient, path: str, expected: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(path)
        assert answer.status_code == 503, answer.text
        if expected in answer.json()["detail"] or time.monotonic() > deadline:
            return answer.json()["detail"]
        time.sleep(0.05)


@pytest.mark.parametrize("case", ["unreachable", "wrong-chain"])
def test_routes_say_why_the_ledger_is_not_there(case: str, anvil_node: AnvilNode, tmp_path: Path) -> None:
    rpc_url, chain_id = (
        (f"http://127.0.0.1:{free_port()}", 31337) if case == "unreachable" else (anvil_node.rpc_url, 161201)
    )
    settings = Settings(
        settings_file=tmp_path / "openledger.toml",
        paths={"data_dir": tmp_path},
        chain={"rpc_url": rpc_url, "chain_id": chain_id},
    )
    app = create_app(settings, features=[ledger_feature.feature])
    app.dependency_overrides[current_user] = lambda: ALICE
    with TestClient(app) as client:
        if case == "unreachable":
            detail = wait_for_detail(client, "/services/platform/api/ledger", "cannot reach")
            assert detail.startswith("the ledger is not available yet (starting: waiting for the chain (")
            assert f"cannot reach the chain's JSON-RPC at {rpc_url}" in detail
        else:
            detail = wait_for_detail(client, "/services/platform/api/wallet", "error:")
            assert "error: the node at" in detail and "is chain id 31337, but the settings say 161201" in detail
        assert client.get("/services/platform/health").status_code == 200  # the rest of the platform still runs
    assert not (tmp_path / "chain" / str(chain_id) / "deployments.json").exists()


def test_ledger_status_says_when_the_chain_died(tmp_path: Path) -> None:
    """/api/ledger reports the chain's real state: not `ready` while the node is dead (it said `ready` for 45 s)."""
    node = start_anvil(free_port())
    try:
        settings = ledger_fixtures.ledger_settings(tmp_path, node)
        operator = load_operator(settings.data_dir)
        ledger_fixtures.fund(node, operator.address)
        deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address)  # the app attaches to it
        app = create_app(settings, features=[ledger_feature.feature])
        app.dependency_overrides[current_user] = lambda: ALICE
        with TestClient(app) as client:
            deadline = time.monotonic() + 30
            while (answer := client.get("/services/platform/api/ledger")).status_code != 200:
                assert time.monotonic() < deadline, answer.text
                time.sleep(0.1)
            assert answer.json()["status"] == "ready" and answer.json()["head_block"] > 0
            node.process.kill()
            node.process.wait()
            dead = client.get("/services/platform/api/ledger").json()
            assert dead["status"] == "chain_unavailable" and dead["head_block"] is None, dead
            assert dead["client"].startswith("unreachable")
    finally:
        node.stop()
