"""Settlement follows governance on a real anvil (no hub): each epoch is split with the parameters in force at its
start block, a vote executed mid-epoch takes effect at the next epoch, the parameters are in the epoch report and
its on-chain commitment, and a payout verifies from chain data alone (ol.attribution.check_on_chain).

The SDK's chain reads go through `ChainOnlyClient`: it answers the two requests `check_on_chain` makes to the
platform (the contract addresses, and eth_call through the chain gateway) straight from anvil, because this test runs
the settlement without the hub; tests/test_governance_notebook.py does it through the real hub.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.db import session_scope
from hub.governance.parameters import from_settings
from hub.keys.wallets import ensure_wallet
from hub.rewards.config import RewardSettings
from hub.rewards.metering import record_inference
from hub.rewards.models import InferenceRecordRow
from hub.rewards.reports import record_view
from hub.rewards.settlement import Settler
from openledger_sdk.attribution import Attribution, Explanation
from tests import ledger_fixtures
from tests.governance_fixtures import governance, pass_proposal, voter
from tests.ledger_fixtures import LedgerEnv, fund
from tests.settlement_fixtures import settlement_parts

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

OWNER = "0x" + "33" * 20
SETTINGS = RewardSettings()
OPEN = 10**18


class ChainOnlyClient:
    """The two platform requests of check_on_chain, answered from anvil (see the module docstring)."""

    def __init__(self, env: LedgerEnv) -> None:
        self.env = env

    def request(self, method: str, service: str, path: str, **kwargs: Any) -> Any:
        if (service, path) == ("platform", "api/ledger"):
            return {"contracts": self.env.ledger.addresses}
        assert (method, service) == ("POST", "chain"), (method, service, path)
        return httpx.post(self.env.node.rpc_url, json=kwargs["json"], timeout=10).json()


@dataclass
class Stack:
    env: LedgerEnv
    engine: Engine
    settler: Settler
    contributor: str

    def record(self) -> str:
        request_id = uuid.uuid4().hex
        with session_scope(self.engine) as session:
            record_inference(
                session,
                request_id=request_id,
                model="gov-model",
                model_owner=OWNER,
                payer="payer",
                prompt_tokens=1000,
                completion_tokens=500,
                price_per_1k_wei=10**15,
                shares={self.contributor: 0.7, OWNER: 0.3},
                settings=SETTINGS,
            )
        return request_id

    def explanation(self, request_id: str) -> Explanation:
        with Session(self.engine) as session:
            row = session.exec(select(InferenceRecordRow).where(InferenceRecordRow.request_id == request_id)).one()
            return Explanation(record_view(session, row, self.env.ledger, show_payer=False))


@pytest.fixture(scope="module")
def stack(ledger_env: LedgerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: Path = tmp_path_factory.mktemp("governance-settlement")
    with settlement_parts(ledger_env, directory, SETTINGS) as parts:
        payer = ensure_wallet(parts.engine, "payer", parts.wallets).address
        contributor = ensure_wallet(parts.engine, "contributor", parts.wallets).address
        fund(ledger_env.node, payer, 10**18)
        ledger_env.ledger.token.send(ledger_env.ledger.token.mint(payer, 10**21), ledger_env.operator)
        yield Stack(ledger_env, parts.engine, parts.settler, contributor)


def test_a_vote_takes_effect_at_the_next_epoch_and_payouts_verify_from_chain(stack: Stack) -> None:
    env, gov = stack.env, governance(stack.env)
    genesis = from_settings(SETTINGS)
    stack.settler.tick()  # the platform sees the chain: the first parameter period starts
    before_vote = stack.record()

    # Mid-epoch, OPEN holders raise the platform fee and change the split.
    params = gov.parameters
    calls = [params.set_platform_fee(3 * 10**15), params.set_fee_split(6000, 3000, 1000)]
    pass_proposal(env, voter(env, 100 * OPEN), calls, f"fees {uuid.uuid4().hex}")
    assert params.parameters().platform_fee == 3 * 10**15
    after_vote = stack.record()  # same epoch: still the parameters in force at its start

    first = stack.settler.settle_now(wait_s=60)
    assert first["status"] == "settled" and first["records"] == 2, first
    assert first["parameters"]["hash"] == genesis.hash and first["parameters"]["platform_fee"] == str(10**15)
    for request_id in (before_vote, after_vote):
        document = stack.explanation(request_id).record["attribution"]
        assert document["platform_fee"] == str(genesis.platform_fee) and document["parameters"]["owner_bps"] == 5000
    on_chain = env.ledger.attribution.get_epoch(first["epoch"])
    assert "0x" + on_chain.parameters_hash.hex() == genesis.hash
    assert on_chain.parameters_block == first["parameters"]["block"]
    assert params.parameters_hash_at(on_chain.parameters_block) == on_chain.parameters_hash

    # The next epoch uses the new parameters.
    next_epoch = stack.record()
    second = stack.settler.settle_now(wait_s=60)
    assert second["status"] == "settled", second
    assert second["parameters"]["platform_fee"] == str(3 * 10**15) and second["parameters"]["owner_bps"] == 6000
    document = stack.explanation(next_epoch).record["attribution"]
    fee = int(document["fee"])
    assert fee == (1500 * 10**15) // 1000 + 3 * 10**15
    assert int(document["owner"]["amount"]) == fee * 6000 // 10_000
    assert second["parameters"]["block"] > first["parameters"]["block"]

    # Anyone verifies each payout from chain data: root, parameters in force at the epoch's start, the split.
    attribution = Attribution(ChainOnlyClient(env))  # type: ignore[arg-type]
    for request_id in (before_vote, after_vote, next_epoch):
        explanation = stack.explanation(request_id)
        assert attribution.check_on_chain(explanation) == {
            "record_in_root": True,
            "epoch_parameters": True,
            "record_parameters": True,
            "split": True,
        }
        assert attribution.verify_on_chain(explanation)


def test_a_payout_with_other_parameters_or_amounts_does_not_verify(stack: Stack) -> None:
    env = stack.env
    request_id = stack.record()
    assert stack.settler.settle_now(wait_s=60)["status"] == "settled"
    attribution = Attribution(ChainOnlyClient(env))  # type: ignore[arg-type]
    honest = stack.explanation(request_id)
    assert attribution.verify_on_chain(honest)

    # A document claiming the genesis split (owner 50%) for this epoch: not the parameters committed on chain.
    claimed = dict(honest.record["attribution"])
    claimed["parameters"] = from_settings(SETTINGS).as_dict()
    forged = Explanation(honest.record | {"attribution": claimed})
    checks = attribution.check_on_chain(forged)
    assert checks["record_parameters"] is False and checks["record_in_root"] is False
    assert not attribution.verify_on_chain(forged)

    # An owner amount one unit higher: the recomputed split disagrees (and so does the leaf).
    padded = dict(honest.record["attribution"])
    padded["owner"] = {**padded["owner"], "amount": str(int(padded["owner"]["amount"]) + 1)}
    checks = attribution.check_on_chain(Explanation(honest.record | {"attribution": padded}))
    assert checks["split"] is False and checks["record_in_root"] is False
