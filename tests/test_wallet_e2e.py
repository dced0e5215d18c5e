"""Wallets, payout links, the faucet and the ledger status through the real hub (proxy → platform service → anvil)."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from web3 import Web3

import openledger_sdk
from hub.ledger.provider import make_provider
from openledger_sdk.wallet import link_typed_data
from tests.hub_harness import RunningHub

pytestmark = pytest.mark.e2e

API = "/services/platform/api"


@pytest.fixture(scope="module")
def carol(platform: RunningHub) -> str:
    token = platform.ensure_user("carol")
    # The ledger comes up in the background once the chain service answers (JupyterHub starts it after platform).
    deadline = time.monotonic() + 90
    with platform.as_token(token) as client:
        while (answer := client.get(f"{API}/ledger")).status_code == 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
    assert answer.status_code == 200, answer.text
    return token


@pytest.fixture(scope="module")
def dave(platform: RunningHub) -> str:
    return platform.ensure_user("dave")


def test_wallet_address_is_stable_and_per_user(platform: RunningHub, carol: str, dave: str) -> None:
    with platform.as_token(carol) as client:
        first, second = client.get(f"{API}/wallet"), client.get(f"{API}/wallet")
    assert first.status_code == 200, first.text
    assert first.json()["address"] == second.json()["address"]
    assert first.json()["user"] == "carol" and first.json()["payout_address"] is None
    with platform.as_token(dave) as client:
        assert client.get(f"{API}/wallet").json()["address"] != first.json()["address"]


def test_link_payout_address_with_the_sdk_and_refuse_another_key(platform: RunningHub, carol: str) -> None:
    ol = openledger_sdk.connect(platform.url, carol)
    mine, other = Account.create(), Account.create()
    assert ol.wallet.link(mine) == mine.address
    assert ol.wallet.payout_address == mine.address

    info = ol.wallet.info()
    domain, nonce, expiry = info["link"]["domain"], info["link"]["nonce"], int(time.time()) + 300
    typed = link_typed_data(domain["chainId"], domain["verifyingContract"], "carol", mine.address, nonce, expiry)
    signature = other.sign_message(encode_typed_data(full_message=typed)).signature  # not the payout's key
    body = {"payout": mine.address, "nonce": nonce, "expiry": expiry, "signature": signature.hex()}
    with platform.as_token(carol) as client:
        answer = client.post(f"{API}/wallet/link", json=body)
    assert answer.status_code == 400
    assert (
        f"the signature was made by {other.address}, not by the payout address {mine.address}"
        in answer.json()["detail"]
    )


def test_faucet_is_admin_only_and_funds_a_user(platform: RunningHub, carol: str) -> None:
    with platform.as_token(carol) as client:
        refused = client.post(f"{API}/admin/faucet", json={"user": "carol"})
    assert refused.status_code == 403
    with platform.admin() as admin:
        answer = admin.post(f"{API}/admin/faucet", json={"user": "carol", "open": "250", "eth": "2"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["open"]["status"] == "confirmed" and answer.json()["open"]["tx_hash"]
    balance = openledger_sdk.connect(platform.url, carol).wallet.balance()
    assert balance.open == 250 and balance.eth == 2 and balance.address == answer.json()["address"]


def test_ledger_status_shows_deployed_contracts(platform: RunningHub, carol: str) -> None:
    with platform.as_token(carol) as client:
        answer = client.get(f"{API}/ledger")
    assert answer.status_code == 200, answer.text
    info = answer.json()
    assert info["chain_id"] == platform.settings.chain.chain_id and info["dev_chain"]
    w3 = Web3(make_provider(platform.settings.anvil_rpc_url))  # the IPC socket: root (the test) may use it
    assert set(info["contracts"]) == {"OpenToken", "DatanetRegistry", "ModelRegistry", "AttributionLedger",
                                      "RewardDistributor", "GovernanceToken", "OpenLedgerGovernor",
                                      "GovernanceTimelock", "ProtocolParameters"}  # fmt: skip
    for address in info["contracts"].values():
        assert len(w3.eth.get_code(address)) > 0
    relay = info["relay"]
    assert relay["failed"] == 0 and {"pending", "rows", "workers"} <= relay.keys()
