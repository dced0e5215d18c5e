"""Fault scenarios of the ledger path (no hub): anvil SIGKILLed under the relay, a chain that rewrites its history,
the relay leader SIGKILLed with a standby on the same PostgreSQL. Each runs on its own data dir and ports and returns
what bench/faults.py records; tests/test_faults.py runs them too."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.chain.anvil import AnvilNode, rpc_call, start_anvil
from hub.db import make_engine, migrate, session_scope
from hub.ledger.contracts import Ledger
from hub.ledger.deploy import deploy_or_attach
from hub.ledger.keys import AnvilDevKey
from hub.relay.lease import advisory_key
from hub.relay.outbox import OPERATOR, OutboxEntry, OutboxStatus, enqueue, status_counts
from hub.relay.signers import load_operator, operator_key_file
from hub.relay.worker import RelayConfig, SignerWorker, relay_web3
from hub.settings import REPO_ROOT, Settings, load_settings
from openledger_sdk.ledger import InferenceRecord, derive_id
from tests.hub_harness import free_port


def records(salt: str, n: int) -> list[InferenceRecord]:
    model = derive_id("model", f"faults-{salt}")
    return [
        InferenceRecord(derive_id("inference", f"{salt}-{i}"), model, "0x" + "56" * 20, 10 + i, 10**12, b"\x09" * 32)
        for i in range(n)
    ]


def enqueue_records(engine: Engine, ledger: Ledger, recs: list[InferenceRecord]) -> None:
    with session_scope(engine) as session:
        for rec in recs:
            call = ledger.attribution.record_inference(rec)
            enqueue(session, call, signer=OPERATOR, kind="inference", ref=rec.record_id.hex())


def counts(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return status_counts(session)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `predicate()` held; AssertionError naming `what` after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def longest_stall_until_confirmed(engine: Engine, n: int, timeout: float) -> float:
    """Wait until all `n` writes are confirmed; return the longest time without a newly confirmed write. On a loaded
    machine the writes trickle (the total time says little), but a relay stuck on a dead connection (web3's IPC
    once spun 30 s on EOF) or sleeping a long backoff shows as a stall."""
    started = last_progress = time.monotonic()
    confirmed, longest = counts(engine)["confirmed"], 0.0
    while confirmed < n:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s: every write confirmed after the restart ({confirmed}/{n})")
        time.sleep(0.05)
        now, current = time.monotonic(), counts(engine)["confirmed"]
        longest = max(longest, now - last_progress)
        if current > confirmed:
            confirmed, last_progress = current, now
    return longest


def compare(engine: Engine, ledger: Ledger, recs: list[InferenceRecord]) -> dict[str, int]:
    """Database against chain: confirmed rows whose record is not on chain (lost), records on chain twice (doubled)."""
    on_chain = [event["args"]["recordId"] for event in ledger.attribution.events("InferenceRecorded")]
    with Session(engine) as session:
        confirmed = set(
            session.exec(select(OutboxEntry.ref).where(OutboxEntry.status == OutboxStatus.CONFIRMED))  # type: ignore[arg-type]
        )
    lost = sum(
        1 for rec in recs if rec.record_id.hex() in confirmed and not ledger.attribution.is_recorded(rec.record_id)
    )
    doubled = sum(
        count - 1 for record_id in {rec.record_id for rec in recs} if (count := on_chain.count(record_id)) > 1
    )
    return {"writes": len(recs), "writes_confirmed": len(confirmed), "writes_lost": lost, "writes_doubled": doubled}


def relay_process(config: Path, log_name: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OPENLEDGER_CONFIG=str(config))
    log = (config.parent / f"{log_name}.log").open("ab")
    command = [sys.executable, "-m", "hub.relay", "--poll-interval", "0.02", *args]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# anvil SIGKILLed right after writes were confirmed -----------------------------------------------------------------
def chain_health(settings: Settings) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.services.chain_port}/services/chain/health"
    try:
        answer = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return 0, {}
    return answer.status_code, answer.json()


@contextmanager
def chain_service(directory: Path) -> Iterator[tuple[Settings, subprocess.Popen]]:
    """The chain service (`python -m hub.chain`) owning an embedded anvil, on its own ports and data dir."""
    config = directory / "openledger.toml"
    config.write_text(
        f'[paths]\ndata_dir = "{directory / "data"}"\n'
        f"[services]\nchain_port = {free_port()}\n[chain]\nanvil_port = {free_port()}\n"
    )
    settings = load_settings(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = (directory / "chain.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.chain"],
        cwd=REPO_ROOT,
        env=dict(os.environ, OPENLEDGER_CONFIG=str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: chain_health(settings)[0] == 200, 60, "the chain service answers")
        yield settings, process
    finally:
        stop(process)


def anvil_sigkill(directory: Path, n: int = 200) -> dict[str, Any]:
    """SIGKILL the embedded anvil the moment the relay has confirmed writes; the chain service must restart it from
    its state on disk with every confirmed write in it (anvil's own 5 s state interval lost them)."""
    with chain_service(directory) as (settings, service):
        operator = load_operator(settings.data_dir)
        rpc_call(settings.anvil_rpc_url, "anvil_setBalance", [operator.address, hex(10**20)])
        ledger = deploy_or_attach(settings, operator=operator.address).ledger  # the generated, funded deployer
        engine = make_engine(settings.database_url)
        migrate(engine)
        recs = records("anvil-kill", n)
        enqueue_records(engine, ledger, recs)
        relay = relay_process(settings.settings_file, "relay")
        try:
            # Mid-way: some confirmed, others mined in blocks not on disk yet or still being sent.
            wait_for(lambda: counts(engine)["confirmed"] >= 5, 60, "some writes confirmed")
            confirmed_at_kill = counts(engine)["confirmed"]
            (anvil,) = psutil.Process(service.pid).children()
            anvil.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: chain_health(settings)[0] != 200, 5, "the chain service reports anvil's death")
            reported_down_s = time.monotonic() - killed
            wait_for(lambda: chain_health(settings)[0] == 200, 30, "the chain service restarted anvil")
            recovery = time.monotonic() - killed
            health = chain_health(settings)[1]
            longest_stall = longest_stall_until_confirmed(engine, n, 90)
            all_confirmed_s = time.monotonic() - killed
        finally:
            stop(relay)
        reloaded = deploy_or_attach(settings, operator=operator.address).ledger
        return compare(engine, reloaded, recs) | {
            "recovery_s": round(recovery, 2),
            "unhealthy_reported_after_s": round(reported_down_s, 2),
            "all_confirmed_after_s": round(all_confirmed_s, 2),
            "longest_stall_s": round(longest_stall, 2),
            "confirmed_at_kill": confirmed_at_kill,
            "anvil_restarts": health.get("restarts"),
            "last_state_dump_s": health.get("last_dump_s"),
        }


# A chain that rewrote its history (a reorg; anvil's evm_snapshot / evm_revert stands in for a public L2) ----------
def chain_rewind(directory: Path, n: int = 12) -> dict[str, Any]:
    node = start_anvil(free_port())
    try:
        settings = Settings(
            settings_file=directory / "openledger.toml",
            paths={"data_dir": directory / "data"},
            chain={"rpc_url": node.rpc_url, "chain_id": node.chain_id},
        )
        operator = load_operator(settings.data_dir)
        rpc_call(node.rpc_url, "anvil_setBalance", [operator.address, hex(10**20)])
        ledger = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
        engine = make_engine(settings.database_url)
        migrate(engine)
        config = RelayConfig(poll_interval=0.01, head_check_interval=0, reverify_interval=0.2, orphan_grace=0)
        worker = SignerWorker(engine, relay_web3(node.rpc_url), operator, OPERATOR, node.chain_id, config)
        snapshot = rpc_call(node.rpc_url, "evm_snapshot")
        recs = records("rewind", n)
        enqueue_records(engine, ledger, recs)
        wait_for(lambda: (worker.step(), counts(engine)["confirmed"] == n)[1], 30, "all confirmed")
        rpc_call(node.rpc_url, "evm_revert", [snapshot])  # the blocks holding them are gone: a reorg, to the relay
        lost_on_chain = sum(1 for rec in recs if not ledger.attribution.is_recorded(rec.record_id))
        rpc_call(node.rpc_url, "evm_mine")  # and the new history goes on without them
        recovery = wait_for(
            lambda: (worker.step(), all(ledger.attribution.is_recorded(r.record_id) for r in recs))[1],
            30,
            "the lost writes are on chain again",
        )
        wait_for(lambda: (worker.step(), counts(engine)["confirmed"] == n)[1], 30, "all confirmed again")
        return compare(engine, ledger, recs) | {
            "recovery_s": round(recovery, 2),
            "erased_by_rewind": lost_on_chain,
            "requeued": worker.status.requeued,
        }
    finally:
        node.stop()


# The relay leader SIGKILLed, a standby on the same PostgreSQL ------------------------------------------------------
def lock_holders(engine: Engine, node: AnvilNode, address: str) -> int:
    key = advisory_key(f"openledger-relay:{node.chain_id}:{address.lower()}")
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND ((classid::bigint << 32) | objid::bigint) = (:key & x'ffffffffffffffff'::bigint)"
    )
    with engine.connect() as connection:
        return int(connection.execute(query, {"key": key}).scalar() or 0)


def relay_leader_sigkill(directory: Path, database_url: str, n: int = 500) -> dict[str, Any]:
    """Two `python -m hub.relay` on one PostgreSQL: one holds the lease and signs; SIGKILL it mid-way through `n`
    writes (about 5 s of work) and the standby must finish them, each on chain once.

    The second half of the writes is queued only once the standby is waiting, just before the kill: a quiet machine
    let the leader finish all `n` while the standby was still starting, and then there was nothing to take over."""
    node = start_anvil(free_port())
    processes: list[subprocess.Popen] = []
    try:
        config = directory / "openledger.toml"
        config.write_text(
            f'[paths]\ndata_dir = "{directory / "data"}"\n[database]\nurl = "{database_url}"\n'
            f'[chain]\nrpc_url = "{node.rpc_url}"\nchain_id = {node.chain_id}\n'
        )
        settings = load_settings(config)
        operator = load_operator(settings.data_dir)
        rpc_call(node.rpc_url, "anvil_setBalance", [operator.address, hex(10**20)])
        ledger = deploy_or_attach(settings, key_source=AnvilDevKey(0), operator=operator.address).ledger
        engine = make_engine(database_url)
        migrate(engine)
        recs = records("lease", n)
        enqueue_records(engine, ledger, recs[: n // 2])
        leader = relay_process(config, "relay-a", "--batch-size", "20")
        processes.append(leader)
        wait_for(lambda: counts(engine)["confirmed"] > 0, 60, "the first relay confirms writes")
        # The standby is another host's replica: a data dir of its own (no shared file lock), the same operator key
        # (a replica's key store holds it too) and the same PostgreSQL.
        other = directory / "replica-b"
        other.mkdir()
        other_config = other / "openledger.toml"
        other_config.write_text(config.read_text().replace(str(directory / "data"), str(other / "data")))
        key = operator_key_file(load_settings(other_config).data_dir)
        key.parent.mkdir(parents=True)
        shutil.copy2(operator_key_file(settings.data_dir), key)
        standby = relay_process(other_config, "relay-b", "--batch-size", "20")
        processes.append(standby)
        standby_log = other / "relay-b.log"
        wait_for(lambda: "another process relays" in standby_log.read_text(), 30, "the standby finds the lease taken")
        holders_with_two = lock_holders(engine, node, operator.address)
        enqueue_records(engine, ledger, recs[n // 2 :])
        wait_for(lambda: counts(engine)["confirmed"] > n // 2, 30, "the leader starts on the second half")
        leader.send_signal(signal.SIGKILL)
        leader.wait()
        killed = time.monotonic()
        at_kill = counts(engine)["confirmed"]
        takeover = wait_for(lambda: counts(engine)["confirmed"] > at_kill, 30, "the standby confirms a write")
        wait_for(lambda: counts(engine)["confirmed"] == n, 90, "the standby finished every write")
        return compare(engine, ledger, recs) | {
            "recovery_s": round(takeover, 2),
            "all_confirmed_after_s": round(time.monotonic() - killed, 2),
            "confirmed_at_kill": at_kill,
            "lease_holders_while_both_ran": holders_with_two,
        }
    finally:
        stop(*processes)
        node.stop()
