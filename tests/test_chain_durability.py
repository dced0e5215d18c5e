"""Final means durable: a write the relay confirmed survives a SIGKILL of the embedded anvil (the chain service
restarts it from the state it wrote to disk), and writes a chain lost anyway (a reorg; simulated on anvil with
evm_snapshot / evm_revert, since no public L2 with reorgs is reachable here) go back in the queue and land again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from sqlmodel import Session

from hub.chain.anvil import rpc_call
from hub.db import make_engine, migrate, session_scope
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.relay.outbox import OPERATOR, enqueue, status_counts
from hub.relay.signers import load_operator
from hub.relay.worker import RelayConfig, SignerWorker, relay_web3
from hub.settings import REPO_ROOT, Settings, load_settings
from openledger_sdk.ledger import InferenceRecord, derive_id
from tests import ledger_fixtures
from tests.ledger_fixtures import LedgerEnv, free_port, fund

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env


def records(salt: str, n: int) -> list[InferenceRecord]:
    model = derive_id("model", "durable")
    return [
        InferenceRecord(derive_id("inference", f"{salt}-{i}"), model, "0x" + "56" * 20, 10 + i, 10**12, b"\x09" * 32)
        for i in range(n)
    ]


def enqueue_all(engine, ledger, recs: list[InferenceRecord]) -> None:  # noqa: ANN001
    with session_scope(engine) as session:
        for rec in recs:
            call = ledger.attribution.record_inference(rec)
            enqueue(session, call, signer=OPERATOR, kind="inference", ref=rec.record_id.hex())


def counts(engine) -> dict[str, int]:  # noqa: ANN001
    with Session(engine) as session:
        return status_counts(session)


def wait_for(predicate, timeout: float, what: str) -> float:  # noqa: ANN001
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


# The embedded chain service, killed under the relay -------------------------------------------------------------
@pytest.fixture
def chain_service(tmp_path: Path) -> Iterator[tuple[Settings, subprocess.Popen]]:
    config = tmp_path / "openledger.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n'
        f"[services]\nchain_port = {free_port()}\n[chain]\nanvil_port = {free_port()}\n"
    )
    settings = load_settings(config)
    env = dict(os.environ, OPENLEDGER_CONFIG=str(config))
    log = (tmp_path / "chain.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.chain"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        wait_for(lambda: chain_health(settings)[0] == 200, 60, "the chain service answers")
        yield settings, process
    finally:
        process.terminate()
        process.wait(20)


def chain_health(settings: Settings) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{settings.services.chain_port}/services/chain/health"
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return answer.status_code, answer.json()


def relay_process(settings: Settings, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OPENLEDGER_CONFIG=str(settings.settings_file))
    log = (settings.data_dir / "relay.log").open("ab")
    command = [sys.executable, "-m", "hub.relay", "--poll-interval", "0.02", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_anvil_sigkill_right_after_confirmations_loses_no_confirmed_write(
    chain_service: tuple[Settings, subprocess.Popen],
) -> None:
    settings, service = chain_service
    operator = load_operator(settings.data_dir)
    rpc_call(settings.anvil_rpc_url, "anvil_setBalance", [operator.address, hex(10**20)])
    # The embedded chain has no rpc_url: name anvil's dev account as the deployer explicitly.
    ledger = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
    engine = make_engine(settings.database_url)
    migrate(engine)
    recs = records("kill-anvil", 40)
    enqueue_all(engine, ledger, recs)
    relay = relay_process(settings)
    try:
        # Kill anvil the moment the first writes are confirmed: on anvil's own 5 s state interval they were lost.
        wait_for(lambda: counts(engine)["confirmed"] >= 5, 60, "some writes confirmed")
        confirmed_at_kill = counts(engine)["confirmed"]
        (anvil,) = psutil.Process(service.pid).children()
        anvil.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: chain_health(settings)[0] != 200, 5, "the chain service reports anvil's death")
        wait_for(lambda: chain_health(settings)[0] == 200, 30, "the chain service restarted anvil")
        recovery = time.monotonic() - killed
        status = chain_health(settings)[1]
        assert status["restarts"] == 1 and status["anvil"] == "running", status
        wait_for(lambda: counts(engine)["confirmed"] == len(recs), 90, "every write confirmed after the restart")
    finally:
        relay.terminate()
        relay.wait(20)
    print(f"anvil back and answering {recovery:.2f} s after SIGKILL; {confirmed_at_kill} confirmed at the kill")
    reloaded = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
    assert all(reloaded.attribution.is_recorded(rec.record_id) for rec in recs)
    ids = [event["args"]["recordId"] for event in reloaded.attribution.events("InferenceRecorded")]
    assert sorted(ids) == sorted(rec.record_id for rec in recs)  # none lost, none twice
    assert counts(engine)["failed"] == 0


# A chain that rewrote its history under the relay -----------------------------------------------------------------
def test_confirmed_writes_a_rewound_chain_lost_are_sent_again(ledger_env: LedgerEnv, tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'relay.sqlite'}")
    migrate(engine)
    node = ledger_env.node
    fund(node, ledger_env.operator.address)
    config = RelayConfig(poll_interval=0.01, head_check_interval=0, reverify_interval=0.2, orphan_grace=0)
    worker = SignerWorker(
        engine, relay_web3(node.rpc_url), ledger_env.operator, OPERATOR, node.chain_id, config, clock=time.monotonic
    )
    snapshot = rpc_call(node.rpc_url, "evm_snapshot")
    recs = records("rewind", 12)
    enqueue_all(engine, ledger_env.ledger, recs)
    wait_for(lambda: (worker.step(), counts(engine)["confirmed"] == len(recs))[1], 30, "all confirmed")
    assert all(ledger_env.ledger.attribution.is_recorded(rec.record_id) for rec in recs)

    rpc_call(node.rpc_url, "evm_revert", [snapshot])  # the blocks holding them are gone: a reorg, to the relay
    assert not any(ledger_env.ledger.attribution.is_recorded(rec.record_id) for rec in recs)
    rpc_call(node.rpc_url, "evm_mine")  # and the new history goes on without them
    took = wait_for(
        lambda: (worker.step(), all(ledger_env.ledger.attribution.is_recorded(r.record_id) for r in recs))[1],
        30,
        "the lost writes are on chain again",
    )
    wait_for(lambda: (worker.step(), counts(engine)["confirmed"] == len(recs))[1], 30, "all confirmed again")
    print(f"lost writes back on chain {took:.2f} s after the rewind; requeued {worker.status.requeued}")
    assert worker.status.requeued == len(recs)
    ids = [event["args"]["recordId"] for event in ledger_env.ledger.attribution.events("InferenceRecorded")]
    assert sorted(i for i in ids if i in {r.record_id for r in recs}) == sorted(r.record_id for r in recs)
