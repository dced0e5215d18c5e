"""Two relay processes on one PostgreSQL database (the scale-out form): exactly one signs at a time, through a
PostgreSQL advisory lock; when the leader is SIGKILLed in the middle of a batch the standby takes over within seconds,
and every write is on chain exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session

from hub.chain.anvil import start_anvil
from hub.db import make_engine, migrate, session_scope
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.relay.lease import advisory_key
from hub.relay.outbox import OPERATOR, enqueue, status_counts
from hub.relay.signers import load_operator
from hub.settings import REPO_ROOT, load_settings
from openledger_sdk.ledger import InferenceRecord, derive_id
from tests.ledger_fixtures import free_port, fund
from tests.postgres import postgres_bin, temporary_postgres

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed")
N = 500  # about 5 s of writes: long enough to start the standby and kill the leader in the middle


@pytest.fixture
def database_url() -> Iterator[str]:
    with temporary_postgres() as url:
        yield url


def relay(config: Path, name: str) -> subprocess.Popen:
    env = dict(os.environ, OPENLEDGER_CONFIG=str(config))
    log = (config.parent / f"relay-{name}.log").open("ab")
    command = [sys.executable, "-m", "hub.relay", "--batch-size", "20", "--poll-interval", "0.02"]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def test_one_leader_signs_and_the_standby_takes_over_when_it_is_killed(tmp_path: Path, database_url: str) -> None:
    node = start_anvil(free_port())
    processes: list[subprocess.Popen] = []
    try:
        config = tmp_path / "openledger.toml"
        config.write_text(
            f'[paths]\ndata_dir = "{tmp_path / "data"}"\n[database]\nurl = "{database_url}"\n'
            f'[chain]\nrpc_url = "{node.rpc_url}"\nchain_id = {node.chain_id}\n'
        )
        settings = load_settings(config)
        operator = load_operator(settings.data_dir)
        fund(node, operator.address)
        ledger = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
        engine = make_engine(database_url)
        migrate(engine)
        model = derive_id("model", "lease")
        recs = [
            InferenceRecord(derive_id("inference", f"lease-{i}"), model, "0x" + "78" * 20, 5 + i, 10**12, b"\x03" * 32)
            for i in range(N)
        ]
        with session_scope(engine) as session:
            for rec in recs:
                call = ledger.attribution.record_inference(rec)
                enqueue(session, call, signer=OPERATOR, kind="inference", ref=rec.record_id.hex())

        def confirmed() -> int:
            with Session(engine) as session:
                return status_counts(session)["confirmed"]

        def lock_holders() -> int:
            key = advisory_key(f"openledger-relay:{node.chain_id}:{operator.address.lower()}")
            query = text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND ((classid::bigint << 32) | objid::bigint) = (:key & x'ffffffffffffffff'::bigint)"
            )
            with engine.connect() as connection:
                return int(connection.execute(query, {"key": key}).scalar() or 0)

        leader = relay(config, "a")
        processes.append(leader)
        deadline = time.monotonic() + 60
        while confirmed() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        standby = relay(config, "b")
        processes.append(standby)
        standby_log = tmp_path / "relay-b.log"
        while "another process relays" not in standby_log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the standby is up and found the lease taken
        assert lock_holders() == 1
        before = confirmed()
        assert 0 < before < N, before
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed = time.monotonic()
        at_kill = confirmed()
        while confirmed() == at_kill and time.monotonic() - killed < 30:
            time.sleep(0.05)
        takeover = time.monotonic() - killed
        while confirmed() < N and time.monotonic() - killed < 90:
            time.sleep(0.1)
        print(f"standby confirmed its first write {takeover:.2f} s after the leader's SIGKILL")
        assert confirmed() == N, (tmp_path / "relay-b.log").read_text()[-3000:]
        assert takeover < 10
        assert lock_holders() == 1
        ids = [event["args"]["recordId"] for event in ledger.attribution.events("InferenceRecorded")]
        assert sorted(ids) == sorted(rec.record_id for rec in recs)  # none lost, none twice
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(20)
        node.stop()
