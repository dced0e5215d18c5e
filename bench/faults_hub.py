"""Fault scenarios of the whole platform started by the launcher (`python -m hub.launcher`, as `make run` does): the
hub SIGKILLed, the launcher stopped with SIGTERM, everything SIGKILLed then started again, OpenLoRA killed in the
middle of a stream read through the proxy. Each runs on its own ports and data dir, with a tiny random model standing
in for the base model (loads in seconds)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.faults_chain import wait_for
from hub.secrets import ensure_secrets
from hub.settings import REPO_ROOT, Settings, load_settings
from tests.hub_harness import RunningHub, write_settings
from tests.tiny_model import build_tiny_model

STOP_LIMIT_S = 10.0


@dataclass
class Launched:
    settings: Settings
    process: subprocess.Popen
    log: Path

    def pid_from(self, name: str) -> int:
        return int((self.settings.hub_dir / name).read_text().strip())

    def tree(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def find(self, needle: str) -> psutil.Process:
        for child in self.tree():
            try:
                if needle in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise AssertionError(f"no process running {needle!r} under the launcher")

    def hub(self) -> RunningHub:
        return RunningHub(self.settings, ensure_secrets(self.settings.data_dir), self.log)


def ready(settings: Settings) -> bool:
    for path in ("/hub/health", "/services/platform/health", "/services/chain/health"):
        try:
            if httpx.get(settings.public_url + path, timeout=2).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


def start_launcher(directory: Path, settings_file: Path) -> Launched:
    settings = load_settings(settings_file)
    log = directory / "launcher.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "hub.launcher"],
        cwd=REPO_ROOT,
        env=dict(os.environ, OPENLEDGER_CONFIG=str(settings_file)),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a signal for it reaches it alone, as an operator's kill would
    )
    return Launched(settings, process, log)


@contextmanager
def launched(directory: Path) -> Iterator[Launched]:
    """`make run` on a settings file of its own; whatever it started is gone afterwards, however the scenario ends."""
    models = directory / "data" / "models" / "smollm2-135m-instruct"  # the catalog name the launcher expects
    if not models.exists():
        build_tiny_model(models, seed=11, max_position_embeddings=2048)  # long enough to kill mid-stream
    settings_file = write_settings(directory, services={"cull_idle_timeout": 3600}, datanets={"seed_demo": False})
    run = start_launcher(directory, settings_file)
    try:
        up = lambda: run.process.poll() is None and ready(run.settings) and "is running at" in run.log.read_text()  # noqa: E731
        wait_for(up, 240, f"the platform is up and the launcher said so ({run.log})")
        yield run
    finally:
        leftovers = run.tree() if run.process.poll() is None else []
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
            try:
                run.process.wait(30)
            except subprocess.TimeoutExpired:
                run.process.kill()
        for process in leftovers:
            with suppress(psutil.NoSuchProcess):
                process.kill()


def running(pid: int) -> bool:
    """Alive and not a zombie (a dead child its parent has not collected yet)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def sigterm_and_check(run: Launched) -> dict[str, Any]:
    """SIGTERM the launcher: it must exit within 10 s and leave no process of its tree running."""
    tree = run.tree()
    started = time.monotonic()
    run.process.send_signal(signal.SIGTERM)
    try:
        code = run.process.wait(STOP_LIMIT_S + 5)
    except subprocess.TimeoutExpired:
        code = None
    stop_s = time.monotonic() - started
    time.sleep(0.5)
    orphans = [p.pid for p in tree if running(p.pid)]
    return {"stop_s": round(stop_s, 2), "exit_code": code, "orphans": len(orphans), "processes_stopped": len(tree)}


def launcher_sigterm(directory: Path) -> dict[str, Any]:
    with launched(directory) as run:
        result = sigterm_and_check(run)
        # Its "recovery" is the stop itself: from SIGTERM until every process is gone and the ports are free.
        return result | {"recovery_s": result["stop_s"], "writes_lost": 0, "writes_doubled": 0}


def hub_sigkill(directory: Path) -> dict[str, Any]:
    """SIGKILL JupyterHub: its proxy and culler must go with it, the launcher must start a new hub."""
    with launched(directory) as run:
        hub_pid, proxy_pid = run.pid_from("jupyterhub.pid"), run.pid_from("proxy.pid")
        culler = run.find("jupyterhub_idle_culler")
        os.kill(hub_pid, signal.SIGKILL)
        killed = time.monotonic()
        gone = wait_for(lambda: not running(proxy_pid) and not running(culler.pid), 10, "proxy and culler died too")
        recovery = wait_for(
            lambda: run.pid_from("jupyterhub.pid") != hub_pid and ready(run.settings), 240, "a new hub is up"
        )
        assert "restarting it" in run.log.read_text()
        return sigterm_and_check(run) | {
            "recovery_s": round(time.monotonic() - killed, 2),
            "proxy_and_culler_gone_after_s": round(gone, 2),
            "writes_lost": 0,
            "writes_doubled": 0,
            "recovery_wait_s": round(recovery, 2),
        }


def relaunch_after_sigkill(directory: Path) -> dict[str, Any]:
    """SIGKILL the launcher and the hub at once (`kill -9` on both), then `make run` again: it must start cleanly."""
    with launched(directory) as run:
        hub_pid = run.pid_from("jupyterhub.pid")
        tree = run.tree()
        os.kill(run.process.pid, signal.SIGKILL)
        os.kill(hub_pid, signal.SIGKILL)
        run.process.wait()
        killed = time.monotonic()
        second = start_launcher(directory, run.settings.settings_file)
        try:
            recovery = wait_for(lambda: second.process.poll() is None and ready(second.settings), 240, "second run up")
            first_left = [p.pid for p in tree if running(p.pid)]
            result = sigterm_and_check(second)
        finally:
            if second.process.poll() is None:
                second.process.kill()
        return result | {
            "recovery_s": round(time.monotonic() - killed - result["stop_s"], 2),
            "second_run_ready_s": round(recovery, 2),
            "first_run_left_running": len(first_left),
            "writes_lost": 0,
            "writes_doubled": 0,
        }


def inference_records(settings: Settings) -> int:
    with sqlite3.connect(settings.data_dir / "openledger.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM inference_records").fetchone()[0])


def openlora_dies_mid_stream(directory: Path) -> dict[str, Any]:
    """Stream a long chat answer through the proxy and SIGKILL the OpenLoRA service after the first chunk: the client
    must learn it within 5 s (error or closed connection), and nothing is charged for the half answer."""
    with launched(directory) as run:
        hub = run.hub()
        token = hub.ensure_user("streamer")
        hub.fund("streamer")
        wait_for(lambda: _openlora_ready(run.settings, token), 120, "OpenLoRA loaded its model")
        before = inference_records(run.settings)
        service = run.find("hub.openlora_service")
        body = {
            "model": "smollm2-135m-instruct",
            "messages": [{"role": "user", "content": "tell me everything"}],
            "max_tokens": 1800,
            "stream": True,
        }
        chunks, outcome, killed = 0, "completed", None
        url = f"{run.settings.public_url}/services/openlora/v1/chat/completions"
        headers = {"Authorization": f"token {token}"}
        try:
            with httpx.stream("POST", url, json=body, headers=headers, timeout=180) as answer:
                for line in answer.iter_lines():
                    if line.startswith("data:"):
                        chunks += 1
                        if killed is None:
                            service.send_signal(signal.SIGKILL)
                            killed = time.monotonic()
                        elif '"error"' in line:
                            outcome = "error event"
                            break
        except httpx.HTTPError as err:
            outcome = f"connection closed ({type(err).__name__})"
        detected = time.monotonic() - killed if killed is not None else None
        time.sleep(1)
        charged = inference_records(run.settings) - before
        # JupyterHub restarts a managed service that exited (it polls every 30 s); the model loads in the background.
        back = wait_for(lambda: _openlora_ready(run.settings, token), 180, "OpenLoRA is back")
        return sigterm_and_check(run) | {
            "recovery_s": round(detected, 2) if detected is not None else None,
            "client_learned": outcome,
            "chunks_before_end": chunks,
            "half_answers_charged": charged,
            "service_back_after_s": round(back + 1 + (detected or 0), 1),
            "writes_lost": 0,
            "writes_doubled": 0,
        }


def _openlora_ready(settings: Settings, token: str) -> bool:
    try:
        answer = httpx.get(
            f"{settings.public_url}/services/openlora/v1/models", headers={"Authorization": f"token {token}"}, timeout=5
        )
    except httpx.HTTPError:
        return False
    return answer.status_code == 200
