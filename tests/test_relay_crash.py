"""Kill the relay process with SIGKILL in the middle of a batch of 200 writes, restart it, and check that every record
is on chain exactly once and every outbox row is confirmed (a real anvil, a SQLite file, `python -m hub.relay`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.chain.anvil import AnvilNode, start_anvil
from hub.db import make_engine, migrate, session_scope
from hub.ledger.contracts import Ledger
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.relay.outbox import OPERATOR, enqueue, status_counts
from hub.relay.signers import load_operator
from hub.settings import REPO_ROOT, Settings, load_settings
from openledger_sdk.ledger import InferenceRecord, derive_id
from tests.ledger_fixtures import free_port, fund

N = 200


@dataclass
class Chain:
    node: AnvilNode
    settings: Settings
    ledger: Ledger
    engine: Engine
    config_file: Path


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    node = start_anvil(free_port())
    config_file = tmp_path / "openledger.toml"
    config_file.write_text(
        f'[paths]\ndata_dir = "{tmp_path / "data"}"\n[chain]\nrpc_url = "{node.rpc_url}"\nchain_id = {node.chain_id}\n'
    )
    try:
        settings = load_settings(config_file)
        operator = load_operator(settings.data_dir)  # the key file the relay process will load
        fund(node, operator.address)
        ledger = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
        engine = make_engine(settings.database_url)
        migrate(engine)
        yield Chain(node, settings, ledger, engine, config_file)
    finally:
        node.stop()


def relay_process(chain: Chain, *args: str, failpoint: str = "") -> subprocess.Popen:
    env = dict(os.environ, OPENLEDGER_CONFIG=str(chain.config_file), OPENLEDGER_RELAY_FAILPOINT=failpoint)
    log = (chain.settings.data_dir / "relay.log").open("ab")
    command = [sys.executable, "-m", "hub.relay", "--batch-size", "40", "--poll-interval", "0.02", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def counts(chain: Chain) -> dict[str, int]:
    with Session(chain.engine) as session:
        return status_counts(session)


def enqueue_records(chain: Chain, n: int = N) -> list[InferenceRecord]:
    model = derive_id("model", "crash")
    records = [
        InferenceRecord(derive_id("inference", f"crash-{i}"), model, "0x" + "34" * 20, 10 + i, 10**12, b"\x07" * 32)
        for i in range(n)
    ]
    with session_scope(chain.engine) as session:
        for rec in records:
            call = chain.ledger.attribution.record_inference(rec)
            enqueue(session, call, signer=OPERATOR, kind="inference", ref=rec.record_id.hex())
    return records


def kill_mid_batch(chain: Chain, process: subprocess.Popen) -> dict[str, int]:
    """SIGKILL once some rows are confirmed and others are signed or sent (a batch in flight)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = counts(chain)
        if 0 < now["confirmed"] < N and now["signed"] + now["sent"] > 0:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return now
        assert process.poll() is None, "the relay exited before it could be killed"
        time.sleep(0.005)
    process.kill()
    raise AssertionError(f"never saw a batch in flight: {counts(chain)}")


def assert_exactly_once(chain: Chain, records: list[InferenceRecord]) -> None:
    restarted = relay_process(chain, "--drain")
    assert restarted.wait(120) == 0, (chain.settings.data_dir / "relay.log").read_text()[-3000:]
    final = counts(chain)
    assert final["confirmed"] == len(records) and final["failed"] == 0, final
    events = chain.ledger.attribution.events("InferenceRecorded")
    ids = [event["args"]["recordId"] for event in events]
    assert len(ids) == len(records) and set(ids) == {rec.record_id for rec in records}  # each exactly once
    assert all(chain.ledger.attribution.is_recorded(rec.record_id) for rec in records)


def test_sigkill_in_the_middle_of_a_batch_then_restart(chain: Chain) -> None:
    records = enqueue_records(chain)
    started = time.perf_counter()
    at_kill = kill_mid_batch(chain, relay_process(chain))
    print(f"killed after {time.perf_counter() - started:.2f} s with {at_kill}")
    assert 0 < at_kill["confirmed"] < N
    assert_exactly_once(chain, records)


def test_sigkill_at_the_worst_moments_then_restart(chain: Chain) -> None:
    """Killed twice before the clean restart: first when the second batch is stored signed but none of it was
    broadcast (signed:2), then when a node accepted a transaction the outbox does not know was sent (broadcast:25)."""
    records = enqueue_records(chain, 120)
    for failpoint in ("signed:2", "broadcast:25"):
        process = relay_process(chain, failpoint=failpoint)
        assert process.wait(60) == -signal.SIGKILL
        at_kill = counts(chain)
        assert at_kill["signed"] > 0 and at_kill["confirmed"] < len(records), (failpoint, at_kill)
    assert_exactly_once(chain, records)


def test_standalone_relay_refuses_wrong_chain_and_unreachable_rpc(
    chain: Chain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.relay.__main__ import main

    for name, chain_section, expected in (
        ("wrong", f'rpc_url = "{chain.node.rpc_url}"\nchain_id = 161201', "is chain id 31337, but the settings say"),
        ("dead", f'rpc_url = "http://127.0.0.1:{free_port()}"\nchain_id = 31337', "cannot reach the chain's JSON-RPC"),
    ):
        config = tmp_path / f"{name}.toml"
        config.write_text(f'[paths]\ndata_dir = "{tmp_path / name}"\n[chain]\n{chain_section}\n')
        monkeypatch.setenv("OPENLEDGER_CONFIG", str(config))
        assert main([]) == 2
        assert expected in capsys.readouterr().err
        assert not (tmp_path / name / "openledger.sqlite").exists()  # nothing written
