"""Settlement on a real anvil without the hub: a runtime with the deployed contracts and a running relay.

The money path through the hub is in test_rewards_e2e.py; this module drives the awkward cases: a payer whose
transfer reverts, a distributor root moved by someone else, a failed commit and its retry, free inferences, and
"per_record" mode through the relay. The tests share one chain and one database and run in order.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.chain.anvil import rpc_call
from hub.db import session_scope
from hub.keys.wallets import ensure_wallet
from hub.relay.outbox import OutboxEntry
from hub.rewards.config import RewardSettings
from hub.rewards.metering import attribution_ledger_address, record_inference
from hub.rewards.models import InferenceRecordRow, RewardEpoch
from hub.rewards.settlement import Settler
from tests import ledger_fixtures
from tests.governance_fixtures import governance, pass_proposal, voter
from tests.ledger_fixtures import LedgerEnv, fund
from tests.settlement_fixtures import settlement_parts

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

OWNER = "0x" + "22" * 20
SETTINGS = RewardSettings()


@dataclass
class Stack:
    env: LedgerEnv
    engine: Engine
    settler: Settler
    addresses: dict[str, str]

    def record(self, payer: str, price: int = 10**15, settings: RewardSettings = SETTINGS, **extra: object) -> str:
        request_id = uuid.uuid4().hex
        with session_scope(self.engine) as session:
            record_inference(
                session,
                request_id=request_id,
                model="m",
                model_owner=OWNER,
                payer=payer,
                prompt_tokens=100,
                completion_tokens=100,
                price_per_1k_wei=price,
                shares={self.addresses["contributor"]: 1},
                settings=settings,
                **extra,  # type: ignore[arg-type]
            )
        return request_id

    def charge_status(self, request_id: str) -> tuple[str, str | None]:
        with Session(self.engine) as session:
            row = session.exec(select(InferenceRecordRow).where(InferenceRecordRow.request_id == request_id)).one()
            return row.charge_status, row.charge_reason

    def epoch(self, number: int) -> RewardEpoch:
        with Session(self.engine) as session:
            epoch = session.get(RewardEpoch, number)
            assert epoch is not None
            return epoch


@pytest.fixture(scope="module")
def stack(ledger_env: LedgerEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory: Path = tmp_path_factory.mktemp("rewards-settlement")
    with settlement_parts(ledger_env, directory, SETTINGS) as parts:
        names = ("rich", "broke", "contributor")
        addresses = {name: ensure_wallet(parts.engine, name, parts.wallets).address for name in names}
        token = ledger_env.ledger.token
        for name in ("rich", "broke"):
            fund(ledger_env.node, addresses[name], 10**18)
        token.send(token.mint(addresses["rich"], 10**21), ledger_env.operator)
        yield Stack(ledger_env, parts.engine, parts.settler, addresses)


def test_a_transfer_that_reverts_leaves_only_that_payers_records_unpaid(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    paid, refused = stack.record("rich"), stack.record("broke")
    # The balance check passes (as if "broke" had spent the tokens after it), so the transfer itself reverts.
    monkeypatch.setattr(Settler, "_cannot_pay", staticmethod(lambda *_args: None))
    report = stack.settler.settle_now(wait_s=30)
    assert report["status"] == "settled", report
    assert report["records"] == 2 and report["paid_records"] == 1
    assert stack.charge_status(paid) == ("paid", None)
    status, reason = stack.charge_status(refused)
    assert status == "unpaid" and reason is not None and "ERC20InsufficientBalance" in reason
    distributor = stack.env.ledger.distributor
    assert "0x" + distributor.merkle_root().hex() == report["payouts_root"]
    assert stack.env.ledger.token.balance_of(distributor.address) == int(report["totals"]["fees"])


def test_settling_again_repeats_nothing(stack: Stack) -> None:
    assert stack.settler.settle_now(wait_s=1) == {
        "status": "nothing to settle",
        "detail": "no inference records since the last epoch",
    }
    assert stack.settler.advance(1) == "settled" and stack.settler.close() is None
    with Session(stack.engine) as session:
        kinds = [
            entry.kind for entry in session.exec(select(OutboxEntry).where(OutboxEntry.kind.startswith("rewards")))
        ]  # type: ignore[attr-defined]
    assert sorted(kinds) == ["rewards.charge", "rewards.charge", "rewards.commit", "rewards.root"]


def test_a_root_moved_by_someone_else_blocks_until_it_is_restored(stack: Stack) -> None:
    distributor, operator = stack.env.ledger.distributor, stack.env.operator
    ours = "0x" + distributor.merkle_root().hex()
    foreign = "0x" + "ab" * 32
    distributor.send(distributor.set_root(foreign, ours), operator)
    request_id = stack.record("rich")
    report = stack.settler.settle_now(wait_s=2)
    assert report["status"] == "charging" and "someone else set it" in report["error"], report
    assert stack.charge_status(request_id) == ("paid", None)  # charged, but nothing committed
    distributor.send(distributor.set_root(ours, foreign), operator)
    report = stack.settler.settle_now(wait_s=30)
    assert report["status"] == "settled" and report["error"] is None and report["previous_root"] == ours


def test_a_failed_commit_is_retried_by_the_next_settle(stack: Stack) -> None:
    env = stack.env
    distributor = env.ledger.distributor
    distributor.send(distributor.revoke_role("attestor", env.operator.address), env.deployer)
    stack.record("rich")
    report = stack.settler.settle_now(wait_s=30)
    assert report["status"] == "failed" and "AccessControlUnauthorizedAccount" in report["error"], report
    stack.settler.tick()  # the background task leaves a failed epoch to an admin
    assert stack.epoch(report["epoch"]).status == "failed"
    distributor.send(distributor.grant_role("attestor", env.operator.address), env.deployer)
    retried = stack.settler.settle_now(wait_s=30)
    assert retried["status"] == "settled" and retried["epoch"] == report["epoch"], retried
    assert "0x" + distributor.merkle_root().hex() == retried["payouts_root"]
    assert stack.epoch(report["epoch"]).attempt == 1


def test_free_inferences_and_per_record_mode(stack: Stack) -> None:
    attribution, env = stack.env.ledger.attribution, stack.env
    # The platform fee is governed: OPEN holders vote it to zero; it applies from the epoch after the next close.
    parameters = governance(env).parameters
    pass_proposal(env, voter(env, 100 * 10**18), [parameters.set_platform_fee(0)], "free inferences")
    stack.record("rich")
    assert stack.settler.settle_now(wait_s=30)["parameters"]["platform_fee"] != "0"  # voted mid-epoch
    free = RewardSettings(platform_fee=0, record_mode="per_record")
    address = attribution_ledger_address(stack.env.settings)  # as a process other than the platform finds it
    assert address == attribution.address
    request_id = stack.record("broke", price=0, settings=free, attribution_ledger=address)
    report = stack.settler.settle_now(wait_s=30)
    assert report["status"] == "settled" and report["totals"]["fees"] == "0", report
    assert report["parameters"]["platform_fee"] == "0"
    assert report["payouts_root"] == report["previous_root"]  # nobody earned anything new: the root stays
    with Session(stack.engine) as session:
        row = session.exec(select(InferenceRecordRow).where(InferenceRecordRow.request_id == request_id)).one()
        entry = session.get(OutboxEntry, row.outbox_id)
        assert entry is not None and entry.status == "confirmed"
    assert attribution.is_recorded(row.record_id)  # its own recordInference transaction, besides the epoch root
    assert "0x" + attribution.get_epoch(report["epoch"]).records_root.hex() == report["records_root"]


def test_settlement_resumes_by_itself_after_the_chain_lost_a_settled_epoch(stack: Stack) -> None:
    """A reorg (anvil's evm_snapshot / evm_revert stands in for a public L2's) erases a settled epoch's charge, commit
    and root after the database marked them confirmed. The relay re-sends them with their stored bytes, and the next
    epoch settles on the background tick alone, with no admin (before: "waits until an admin resolves it")."""
    ledger, node = stack.env.ledger, stack.env.node
    snapshot = rpc_call(node.rpc_url, "evm_snapshot")
    first = stack.record("rich")
    settled = stack.settler.settle_now(wait_s=30)
    assert settled["status"] == "settled", settled
    rpc_call(node.rpc_url, "evm_revert", [snapshot])
    assert "0x" + ledger.distributor.merkle_root().hex() != settled["payouts_root"]  # the chain lost the epoch
    rpc_call(node.rpc_url, "evm_mine")
    second = stack.record("rich")
    stack.settler.close()
    deadline = time.monotonic() + 60
    while stack.epoch(settled["epoch"] + 1).status != "settled" and time.monotonic() < deadline:
        stack.settler.tick()  # what the platform's background task does; nobody calls settle
        time.sleep(0.2)
    assert stack.epoch(settled["epoch"] + 1).status == "settled", stack.epoch(settled["epoch"] + 1)
    assert ledger.attribution.get_epoch(settled["epoch"]) is not None  # the lost epoch is on chain again
    assert "0x" + ledger.distributor.merkle_root().hex() == stack.epoch(settled["epoch"] + 1).payouts_root
    assert stack.charge_status(first) == ("paid", None) and stack.charge_status(second) == ("paid", None)
