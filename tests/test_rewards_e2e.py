"""The whole money path on anvil through the real hub: metering → settlement → claims, exact to the smallest unit.

Records with chosen shares are written here directly into the platform's database, exactly as the OpenLoRA service
does (same DB URL, same function), so the amounts can be checked to the smallest unit;
tests/test_openlora_attribution.py
covers the shares the server computes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from eth_account import Account
from web3 import Web3

import openledger_sdk
from hub.db import make_engine, session_scope
from hub.ledger.contracts import Ledger
from hub.ledger.provider import make_provider
from hub.rewards.config import RewardSettings
from hub.rewards.metering import record_inference
from openledger_sdk.client import Client
from openledger_sdk.ledger.records import PAYOUT_LEAF_TYPES
from openledger_sdk.merkle import verify
from tests.hub_harness import RunningHub

pytestmark = pytest.mark.e2e

API = "/services/platform/api"
USERS = ("rw-payer1", "rw-payer2", "rw-poor", "rw-owner", "rw-alice", "rw-bob")


@dataclass
class World:
    tokens: dict[str, str]
    address: dict[str, str]  # user → custodial address
    operator: str
    ledger: Ledger

    def sdk(self, platform: RunningHub, user: str) -> Client:
        return openledger_sdk.connect(platform.url, self.tokens[user])


@pytest.fixture(scope="module")
def world(platform: RunningHub) -> World:
    tokens = {name: platform.ensure_user(name) for name in USERS}
    deadline = time.monotonic() + 90
    with platform.as_token(tokens["rw-owner"]) as client:
        while (answer := client.get(f"{API}/ledger")).status_code == 503:  # the chain comes up after the platform
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.2)
        assert answer.status_code == 200, answer.text
        info = answer.json()
    with platform.admin() as admin:
        for payer, amount in (("rw-payer1", "10"), ("rw-payer2", "10"), ("rw-poor", "0")):
            funded = admin.post(f"{API}/admin/faucet", json={"user": payer, "open": amount, "eth": "1"})
            assert funded.status_code == 200, funded.text
    address = {}
    for name in USERS:
        with platform.as_token(tokens[name]) as client:
            address[name] = client.get(f"{API}/wallet").json()["address"]
    w3 = Web3(make_provider(platform.settings.chain_rpc_url))  # the embedded anvil: an IPC socket
    return World(tokens, address, info["operator"], Ledger.at(w3, info["chain_id"], info["contracts"]))


def test_fees_settle_and_pay_out_to_the_smallest_unit(platform: RunningHub, world: World) -> None:
    ledger, address = world.ledger, world.address
    bob_payout = Account.create()
    assert world.sdk(platform, "rw-bob").wallet.link(bob_payout) == bob_payout.address  # bob is paid there

    # Other tests on this shared hub meter inferences too: settle theirs first, so this epoch holds only ours.
    with platform.admin() as admin:
        earlier = admin.post(f"{API}/admin/settle", json={"wait_s": 60})
    assert earlier.status_code == 200 and earlier.json()["status"] in ("settled", "empty", "nothing to settle"), (
        earlier.text
    )

    # Metering: what the OpenLoRA service will do per request. Prices with repeating decimals leave rounding dust.
    run = uuid.uuid4().hex[:8]
    alice, bob = address["rw-alice"], address["rw-bob"]
    requests = [
        ("rw-payer1", 1234, 567, {alice: 3, bob: 1}),  # alice's 3/4 is over the 50% cap: bob gets the excess
        ("rw-payer1", 999, 1, {alice: 1.0}),  # alone and capped: half the pool is unattributed
        ("rw-payer2", 10, 2000, {}),  # no attribution: the whole pool is unattributed
        ("rw-payer2", 77, 33, {alice: "0.2", bob: 0.3}),
        ("rw-poor", 500, 500, {alice: 1, bob: 1}),  # cannot pay: unpaid, excluded, pays nobody
    ]
    ids = [f"{run}-{i}" for i in range(len(requests))]
    engine = make_engine(platform.settings.database_url)
    try:
        with session_scope(engine) as session:
            rows = [
                record_inference(
                    session,
                    request_id=request_id,
                    model=f"rw-model-{run}",
                    model_owner=address["rw-owner"],
                    payer=payer,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    price_per_1k_wei=333_333_333_333_333,
                    price_out_per_1k_wei=1_000_000_000_000_001,
                    shares=shares,
                    top_examples=[{"datanet": "faq", "version": 1, "row_id": i}],
                    settings=RewardSettings(),
                )
                for i, (request_id, (payer, prompt, completion, shares)) in enumerate(zip(ids, requests, strict=True))
            ]
            docs = [(row.payer, row.fee, row.attribution) for row in rows]
    finally:
        engine.dispose()

    # What each account must receive, from the frozen splits of the paid records.
    expected: dict[str, int] = {}
    due = {"rw-payer1": 0, "rw-payer2": 0}
    for payer, fee, doc in docs:
        if payer == "rw-poor":
            continue
        due[payer] += fee
        payees = [(doc["owner"]["address"], doc["owner"]["amount"]), (world.operator, doc["protocol"])]
        payees += [(world.operator, doc["unattributed"])]  # unattributed_to = "protocol" (the default)
        payees += [
            (bob_payout.address if c["address"] == bob else c["address"], c["amount"]) for c in doc["contributors"]
        ]
        for account, amount in payees:
            expected[account] = expected.get(account, 0) + int(amount)
    assert sum(expected.values()) == sum(due.values())
    watched = [*expected, address["rw-payer1"], address["rw-payer2"], address["rw-poor"], ledger.distributor.address]
    # The treasury is shared with every other test on this hub: claim what earlier epochs left it first.
    with platform.admin() as admin:
        assert admin.post(f"{API}/rewards/claim", json={"address": world.operator}).status_code == 200
    before = {account: ledger.token.balance_of(account) for account in watched}

    # Settlement, by an admin, on demand.
    with platform.admin() as admin:
        settled = admin.post(f"{API}/admin/settle", json={"wait_s": 60})
    assert settled.status_code == 200, settled.text
    report = settled.json()
    assert report["status"] == "settled" and report["records"] == 5 and report["paid_records"] == 4
    assert report["totals"]["fees"] == str(sum(due.values()))
    charges = {charge["payer"]: charge for charge in report["charges"]}
    assert charges["rw-poor"]["status"] == "unpaid" and "holds 0 OPEN base units" in charges["rw-poor"]["reason"]
    assert {charges[p]["status"] for p in due} == {"paid"}
    on_chain = ledger.attribution.get_epoch(report["epoch"])
    assert "0x" + on_chain.records_root.hex() == report["records_root"] and on_chain.totals.fees == sum(due.values())
    assert "0x" + ledger.distributor.merkle_root().hex() == report["payouts_root"]
    for payer, amount in due.items():
        assert ledger.token.balance_of(address[payer]) == before[address[payer]] - amount
    assert ledger.token.balance_of(address["rw-poor"]) == 0
    assert ledger.token.balance_of(ledger.distributor.address) == before[ledger.distributor.address] + sum(due.values())

    # Explanations verify against the root on chain; a tampered proof does not; the unpaid record has no proof.
    explained = world.sdk(platform, "rw-alice").attribution.explain(ids[0])
    assert explained.verify() and explained.record["payer"] is None  # alice is not the payer
    proof = explained.record["proof"]["proof"]
    assert not explained.verify(proof=[proof[0][:-1] + ("1" if proof[0][-1] == "0" else "0"), *proof[1:]])
    unpaid = world.sdk(platform, "rw-poor").attribution.explain(ids[4])
    assert unpaid.record["charge_status"] == "unpaid" and unpaid.record["payer"] == "rw-poor"
    with pytest.raises(openledger_sdk.OpenLedgerError, match="not in an epoch committed on chain"):
        unpaid.verify()

    # Claims: through the SDK, through the API, and by an admin for the treasury (anyone may claim for anyone).
    (mine,) = world.sdk(platform, "rw-alice").rewards.proof()  # what RewardDistributor.claim takes
    assert mine["cumulative"] == str(expected[alice]) and mine["root"] == report["payouts_root"]
    assert verify(mine["root"], [alice, expected[alice]], PAYOUT_LEAF_TYPES, mine["proof"])
    pending = world.sdk(platform, "rw-alice").rewards.pending()
    assert pending.claimable_wei == expected[alice] and pending.epoch == report["epoch"]
    assert world.sdk(platform, "rw-alice").rewards.claim().paid_wei == expected[alice]
    assert world.sdk(platform, "rw-bob").rewards.claim().paid_wei == expected[bob_payout.address]
    with platform.as_token(world.tokens["rw-owner"]) as client:
        answer = client.post(f"{API}/rewards/claim", json={})
    assert answer.status_code == 200 and answer.json()["paid"] == str(expected[address["rw-owner"]]), answer.text
    with platform.admin() as admin:
        answer = admin.post(f"{API}/rewards/claim", json={"address": world.operator})
    assert answer.status_code == 200 and answer.json()["paid"] == str(expected[world.operator]), answer.text

    for account, amount in expected.items():
        assert ledger.token.balance_of(account) == before[account] + amount, account
    assert ledger.token.balance_of(ledger.distributor.address) == before[ledger.distributor.address]

    # A second claim pays nothing.
    again = world.sdk(platform, "rw-alice").rewards.claim()
    assert again.paid_wei == 0 and again.claims[0]["status"] == "nothing to claim"
    assert ledger.token.balance_of(alice) == before[alice] + expected[alice]
    assert world.sdk(platform, "rw-alice").rewards.pending().claimable_wei == 0

    # Dashboards: the model's revenue counts every record, unpaid ones as such.
    with platform.as_token(world.tokens["rw-alice"]) as client:  # not the owner: refused
        assert client.get(f"{API}/models/rw-model-{run}/revenue").status_code == 403
    with platform.admin() as admin:
        revenue = admin.get(f"{API}/models/rw-model-{run}/revenue").json()
    assert revenue["totals"]["requests"] == 5 and revenue["totals"]["unpaid"] == str(docs[4][1])
    assert revenue["totals"]["fees"] == str(sum(fee for _, fee, _ in docs))
    assert {c["address"] for c in revenue["top_contributors"]} == {alice, bob}
    with platform.admin() as admin:
        table = admin.get(f"{API}/admin/progress", params={"users": "rw-payer1,rw-alice"}).json()
    assert table["rw-payer1"]["inferences"] == 2 and table["rw-alice"]["inferences"] == 0


def test_settling_with_nothing_open_is_a_no_op(platform: RunningHub, world: World) -> None:
    with platform.admin() as admin:
        before = admin.get(f"{API}/rewards/epochs").json()
        answer = admin.post(f"{API}/admin/settle", json={"wait_s": 5})
        assert answer.status_code == 200 and answer.json()["status"] == "nothing to settle", answer.text
        assert admin.get(f"{API}/rewards/epochs").json() == before
    with platform.as_token(world.tokens["rw-alice"]) as client:
        assert client.post(f"{API}/admin/settle", json={}).status_code == 403
