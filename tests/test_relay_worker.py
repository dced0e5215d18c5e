"""The relay worker on a real anvil: outbox semantics, batches, reverts, duplicates, unfunded signers, fee bumps,
foreign nonces and rebroadcast after a failed send. The kill-the-process test is in test_relay_crash.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.chain.anvil import rpc_call
from hub.db import make_engine, migrate, session_scope
from hub.ledger.tx import PreparedCall, send_call
from hub.relay.outbox import OPERATOR, OutboxConflictError, OutboxEntry, OutboxStatus, enqueue, status_counts
from hub.relay.service import RelayService
from hub.relay.worker import RelayConfig, SignerWorker, classify_refusal, relay_web3
from openledger_sdk.ledger import InferenceRecord, derive_id
from tests import ledger_fixtures
from tests.ledger_fixtures import LedgerEnv, fund

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

FAST = RelayConfig(batch_size=50, poll_interval=0.01, idle_interval=0.05, stuck_after=30, orphan_grace=0)


def record(salt: str, i: int = 0) -> InferenceRecord:
    return InferenceRecord(
        derive_id("inference", f"{salt}-{i}"), derive_id("model", "m"), "0x" + "12" * 20, 100 + i, 10**15, b"\x01" * 32
    )


def new_engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'relay.sqlite'}")
    migrate(engine)
    return engine


def enqueue_records(engine: Engine, env: LedgerEnv, salt: str, n: int, signer: str = OPERATOR) -> list[InferenceRecord]:
    records = [record(salt, i) for i in range(n)]
    with session_scope(engine) as session:
        for rec in records:
            enqueue(
                session,
                env.ledger.attribution.record_inference(rec),
                signer=signer,
                kind="inference",
                ref=rec.record_id.hex(),
            )
    return records


def rows(engine: Engine) -> list[OutboxEntry]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxEntry).order_by(OutboxEntry.id)))


def run_until(worker: SignerWorker, done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"relay did not finish: {worker.status}"
        worker.step()
        time.sleep(0.01)


def all_done(engine: Engine) -> Callable[[], bool]:
    def check() -> bool:
        with Session(engine) as session:
            counts = status_counts(session)
        return counts["pending"] + counts["signed"] + counts["sent"] == 0

    return check


def worker_for(env: LedgerEnv, engine: Engine, account=None, config: RelayConfig = FAST) -> SignerWorker:  # noqa: ANN001
    w3 = relay_web3(env.node.rpc_url)
    return SignerWorker(engine, w3, account or env.operator, OPERATOR, env.node.chain_id, config)


@contextmanager
def node_gone_at_broadcast(worker: SignerWorker) -> Iterator[None]:
    """The node stops answering between signing and broadcasting."""

    def refuse(*_args: object) -> None:
        raise ConnectionError("connection refused")

    provider = worker.w3.provider
    provider.make_batch_request = refuse  # type: ignore[method-assign]
    worker.w3.eth.send_raw_transaction = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        del provider.make_batch_request
        del worker.w3.eth.send_raw_transaction


# Outbox ------------------------------------------------------------------------------------------------------------
def test_enqueue_joins_the_callers_transaction_and_is_idempotent(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    call = ledger_env.ledger.attribution.record_inference(record("tx"))
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        enqueue(session, call, signer=OPERATOR, kind="inference", ref="r1")
        raise RuntimeError("the business write failed")
    assert rows(engine) == []  # rolled back with the caller's transaction

    with session_scope(engine) as session:
        first = enqueue(session, call, signer=OPERATOR, kind="inference", ref="r1")
        assert enqueue(session, call, signer=OPERATOR, kind="inference", ref="r1") is first  # unflushed, same row
        assert first in session.new  # nothing was flushed by enqueue
    (stored,) = rows(engine)
    with session_scope(engine) as session:
        again = enqueue(session, call, signer=OPERATOR, kind="inference", ref="r1")
        assert again.id == stored.id and again.status == OutboxStatus.PENDING
        other = ledger_env.ledger.attribution.record_inference(record("tx", 1))
        with pytest.raises(OutboxConflictError, match="inference:r1 exists with another call"):
            enqueue(session, other, signer=OPERATOR, kind="inference", ref="r1")
        with pytest.raises(ValueError, match="non-empty ref"):
            enqueue(session, other, signer=OPERATOR, kind="inference", ref="")
    assert len(rows(engine)) == 1


def test_refusal_classes() -> None:
    assert classify_refusal(Exception("{'code': -32003, 'message': 'transaction already imported'}")) == "known"
    assert classify_refusal(Exception("nonce too low")) == "nonce_low"
    assert classify_refusal(Exception("Insufficient funds for gas * price + value")) == "unfunded"
    assert classify_refusal(Exception("replacement transaction underpriced")) == "underpriced"
    assert classify_refusal(Exception("something else")) == "other"


# Sending -----------------------------------------------------------------------------------------------------------
def test_batch_is_recorded_once_with_consecutive_nonces(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    records = enqueue_records(engine, ledger_env, "batch", 30)
    worker = worker_for(ledger_env, engine, config=RelayConfig(batch_size=12, poll_interval=0.01))
    started = time.perf_counter()
    run_until(worker, all_done(engine))
    elapsed = time.perf_counter() - started
    done = rows(engine)
    assert {row.status for row in done} == {OutboxStatus.CONFIRMED}
    nonces = sorted(row.nonce for row in done)
    assert nonces == list(range(nonces[0], nonces[0] + 30))
    assert all(row.tx_hash and row.receipt_block and row.gas_used for row in done)
    assert all(ledger_env.ledger.attribution.is_recorded(rec.record_id) for rec in records)
    print(f"relay: 30 recordInference in {elapsed:.2f} s ({30 / elapsed:.0f} writes/s)")


def test_already_on_chain_is_confirmed_without_a_transaction(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    (rec,) = enqueue_records(engine, ledger_env, "already", 1)
    attribution = ledger_env.ledger.attribution
    attribution.send(attribution.record_inference(rec), ledger_env.operator)  # written outside the relay
    run_until(worker_for(ledger_env, engine), all_done(engine))
    (row,) = rows(engine)
    assert row.status == OutboxStatus.CONFIRMED and row.tx_hash is None and row.nonce is None
    assert "already on chain (RecordExists)" in row.last_error


def test_revert_fails_the_row_and_later_rows_still_go_through(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    datanets = ledger_env.ledger.datanets
    unknown = derive_id("datanet", "never-created")
    with session_scope(engine) as session:
        enqueue(session, datanets.publish_version(unknown, 1, b"\x01" * 32, 1, b"\x02" * 32), signer=OPERATOR,
                kind="datanet.publish", ref="bad")  # fmt: skip
    (rec,) = enqueue_records(engine, ledger_env, "after-revert", 1)
    run_until(worker_for(ledger_env, engine), all_done(engine))
    bad, good = rows(engine)
    assert bad.status == OutboxStatus.FAILED and bad.error_name == "UnknownDatanet" and bad.nonce is None
    assert "DatanetRegistry.publishVersion reverted with UnknownDatanet(datanetId=0x" in bad.last_error
    assert good.status == OutboxStatus.CONFIRMED and ledger_env.ledger.attribution.is_recorded(rec.record_id)


def test_dependent_writes_in_one_batch_wait_for_each_other(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    """publishVersion estimated before createDatanet is mined reverts: it must be retried, not failed."""
    engine = new_engine(tmp_path)
    datanets, owner = ledger_env.ledger.datanets, ledger_env.outsider.address
    dn = derive_id("datanet", "dependent")
    with session_scope(engine) as session:
        enqueue(session, datanets.create_datanet(dn, owner, b"\x03" * 32), signer=OPERATOR, kind="dn.create", ref="d")
        for version in (1, 2):
            call = datanets.publish_version(dn, version, bytes([version]) * 32, version, b"\x04" * 32)
            enqueue(session, call, signer=OPERATOR, kind="dn.publish", ref=f"d/{version}")
    run_until(worker_for(ledger_env, engine), all_done(engine))
    assert [row.status for row in rows(engine)] == [OutboxStatus.CONFIRMED] * 3
    assert datanets.get_datanet(dn).latest_version == 2


def test_duplicate_mined_in_the_same_batch_counts_as_done(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    """Two rows (different business keys) writing one record id: the second transaction reverts on chain with
    RecordExists, which the relay decodes and treats as success."""
    engine = new_engine(tmp_path)
    call = ledger_env.ledger.attribution.record_inference(record("twice"))
    with session_scope(engine) as session:
        enqueue(session, call, signer=OPERATOR, kind="inference", ref="a")
        enqueue(session, call, signer=OPERATOR, kind="inference", ref="b")
    run_until(worker_for(ledger_env, engine), all_done(engine))
    first, second = rows(engine)
    assert first.status == second.status == OutboxStatus.CONFIRMED
    assert first.last_error is None and "already on chain (RecordExists)" in second.last_error
    assert second.tx_hash is not None and second.receipt_block is not None  # a mined, reverted transaction
    events = ledger_env.ledger.attribution.events("InferenceRecorded", record_id=record("twice").record_id)
    assert len(events) == 1


def test_unfunded_signer_pauses_with_rows_pending_then_resumes(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    ledger, deployer = ledger_env.ledger, ledger_env.deployer
    poor = Account.create()
    ledger.attribution.send(ledger.attribution.grant_role("attestor", poor.address), deployer)
    enqueue_records(engine, ledger_env, "poor", 3)
    worker = worker_for(ledger_env, engine, account=poor, config=RelayConfig(unfunded_pause=0.2, poll_interval=0.01))
    worker.step()
    assert worker.status.state == "paused"
    assert f"signer operator ({poor.address}) cannot pay for gas on chain 31337: balance 0 wei" in worker.status.message
    assert {row.status for row in rows(engine)} == {OutboxStatus.PENDING}
    assert all(row.nonce is None and row.raw_tx is None for row in rows(engine))  # nothing half-written
    fund(ledger_env.node, poor.address)
    time.sleep(0.25)
    run_until(worker, all_done(engine))
    assert worker.status.state in ("running", "idle") and {r.status for r in rows(engine)} == {OutboxStatus.CONFIRMED}


def test_unreachable_rpc_is_reported_and_rows_stay_pending(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    enqueue_records(engine, ledger_env, "unreachable", 2)
    dead = f"http://127.0.0.1:{ledger_fixtures.free_port()}"
    relay = RelayService(engine, dead, 31337, lambda _: ledger_env.operator, tmp_path / "locks", FAST)
    relay.start()
    try:
        deadline = time.monotonic() + 10
        while not any(w["state"] == "error" for w in relay.status()["workers"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        (worker,) = relay.status()["workers"]
        assert worker["message"].startswith(f"cannot reach the chain's JSON-RPC at {dead}")
        assert relay.status()["rows"]["pending"] == 2
    finally:
        relay.stop()


# Stuck, dropped and foreign transactions ---------------------------------------------------------------------------
@pytest.fixture
def manual_mining(ledger_env: LedgerEnv):  # noqa: ANN201
    rpc_call(ledger_env.node.rpc_url, "evm_setAutomine", [False])
    try:
        yield lambda: rpc_call(ledger_env.node.rpc_url, "evm_mine", [])
    finally:
        rpc_call(ledger_env.node.rpc_url, "evm_setAutomine", [True])


@pytest.mark.parametrize("dropped", [True, False], ids=["dropped", "stuck-in-pool"])
def test_fee_bump_replaces_a_dropped_or_stuck_transaction(
    ledger_env: LedgerEnv,
    tmp_path: Path,
    manual_mining,
    dropped: bool,  # noqa: ANN001
) -> None:
    engine = new_engine(tmp_path)
    (rec,) = enqueue_records(engine, ledger_env, f"bump-{dropped}", 1)
    worker = worker_for(ledger_env, engine, config=RelayConfig(stuck_after=0.2, poll_interval=0.01))
    worker.step()
    (sent,) = rows(engine)
    assert sent.status == OutboxStatus.SENT
    if dropped:
        rpc_call(ledger_env.node.rpc_url, "anvil_dropTransaction", [sent.tx_hash])
    time.sleep(0.25)
    worker.step()  # stuck: re-signed with the same nonce and higher fees, stored, broadcast
    (bumped,) = rows(engine)
    assert bumped.nonce == sent.nonce and bumped.tx_hash != sent.tx_hash
    assert bumped.previous_hashes == sent.tx_hash and bumped.attempts == 2
    assert (
        bumped.max_fee_per_gas > sent.max_fee_per_gas
        and bumped.max_priority_fee_per_gas > sent.max_priority_fee_per_gas
    )
    manual_mining()
    run_until(worker, all_done(engine))
    (done,) = rows(engine)
    assert done.status == OutboxStatus.CONFIRMED and done.tx_hash == bumped.tx_hash
    assert len(ledger_env.ledger.attribution.events("InferenceRecorded", record_id=rec.record_id)) == 1


def test_nonce_taken_by_a_foreign_transaction_requeues_the_row(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    """Someone used the operator key outside the relay while a signed row waited: the row is signed again."""
    engine = new_engine(tmp_path)
    (rec,) = enqueue_records(engine, ledger_env, "foreign", 1)
    worker = worker_for(ledger_env, engine)
    w3 = ledger_env.ledger.w3
    with node_gone_at_broadcast(worker), pytest.raises(ConnectionError):
        worker.step()
    (signed,) = rows(engine)
    assert signed.status == OutboxStatus.SIGNED and signed.raw_tx  # stored before the broadcast
    send_call(w3, PreparedCall("ETH", "transfer", ledger_env.outsider.address, "0x", 1), ledger_env.operator,
              nonce=signed.nonce)  # fmt: skip
    run_until(worker, all_done(engine))
    (done,) = rows(engine)
    assert done.status == OutboxStatus.CONFIRMED and done.nonce == signed.nonce + 1
    assert ledger_env.ledger.attribution.is_recorded(rec.record_id)


def test_signed_rows_are_rebroadcast_by_a_new_worker(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    records = enqueue_records(engine, ledger_env, "rebroadcast", 5)
    crashed = worker_for(ledger_env, engine)
    with node_gone_at_broadcast(crashed), pytest.raises(ConnectionError):
        crashed.step()
    assert {row.status for row in rows(engine)} == {OutboxStatus.SIGNED}
    hashes = {row.tx_hash for row in rows(engine)}
    run_until(worker_for(ledger_env, engine), all_done(engine))
    assert {row.tx_hash for row in rows(engine)} == hashes  # the same signed bytes, not new transactions
    assert all(ledger_env.ledger.attribution.is_recorded(rec.record_id) for rec in records)
