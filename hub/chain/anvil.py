"""Start and stop a local anvil node with persistent state (the embedded default chain)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.lifecycle import die_with_parent
from hub.paths import node_bin

# anvil's default dev mnemonic accounts are public knowledge: they only fund the local dev chain.
DEFAULT_ACCOUNTS = 10


class AnvilError(Exception):
    """anvil did not start or answer."""


@dataclass
class AnvilNode:
    process: subprocess.Popen
    rpc_url: str
    chain_id: int

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM lets anvil write its --state file before exiting."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def rpc_call(rpc_url: str, method: str, params: list | None = None, timeout: float = 5) -> object:
    response = httpx.post(
        rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout
    )
    response.raise_for_status()
    body = response.json()
    if "error" in body:
        raise AnvilError(f"{method} failed: {body['error']}")
    return body["result"]


def start_anvil(
    port: int,
    chain_id: int = 31337,
    state_file: Path | None = None,
    log_file: Path | None = None,
    block_time: float | None = None,
    startup_timeout: float = 30,
    extra_args: Sequence[str] = (),
) -> AnvilNode:
    """Start anvil on 127.0.0.1:port; with `state_file`, chain state survives restarts."""
    command = [str(node_bin("anvil")), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id)]
    command += ["--accounts", str(DEFAULT_ACCOUNTS), "--silent"]
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        # --state loads the file if present and dumps on exit; the interval limits loss on a crash.
        command += ["--state", str(state_file), "--state-interval", "5"]
    if block_time:
        command += ["--block-time", str(block_time)]
    command += list(extra_args)  # e.g. --load-state from hub.chain.supervisor, which writes the state itself
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    output = log_file.open("ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    node = AnvilNode(process=process, rpc_url=f"http://127.0.0.1:{port}", chain_id=chain_id)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AnvilError(f"anvil exited with code {process.returncode} (port {port} in use?)")
        try:
            answered = int(str(rpc_call(node.rpc_url, "eth_chainId", timeout=1)), 16)
        except (httpx.HTTPError, AnvilError):
            time.sleep(0.1)
            continue
        if answered != chain_id:
            node.stop()
            raise AnvilError(f"port {port} answers chain id {answered}, expected {chain_id}: another node?")
        return node
    node.stop()
    raise AnvilError(f"anvil did not answer on port {port} within {startup_timeout:.0f} s")
