"""Start and stop a local anvil node with persistent state (the embedded default chain)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from hub.chain.ipc import IPCError, ipc_request
from hub.ledger.provider import is_ipc
from hub.lifecycle import die_with_parent
from hub.paths import node_bin

# anvil's default dev mnemonic accounts are public knowledge: they only fund the local dev chain.
DEFAULT_ACCOUNTS = 10
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


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
    """One JSON-RPC call to a node by URL or IPC socket path."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    if is_ipc(rpc_url):
        body = ipc_request(rpc_url, payload, timeout)
    else:
        response = httpx.post(rpc_url, json=payload, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    if not isinstance(body, dict):
        raise AnvilError(f"{method}: unexpected answer {body!r:.200}")
    if "error" in body:
        raise AnvilError(f"{method} failed: {body['error']}")
    return body["result"]


def isolated_command(command: list[str]) -> list[str]:
    """`command` in a network namespace of its own (an unprivileged user namespace: no root needed): its TCP port
    exists only there, so the IPC socket is the one way in. Raises AnvilError where the host forbids it."""
    unshare = shutil.which("unshare")
    probe = [unshare, "--user", "--net", "true"] if unshare else None
    if probe is None or subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        raise AnvilError(
            "cannot start anvil in a network namespace of its own (`unshare --user --net` failed): allow "
            "unprivileged user namespaces (sysctl user.max_user_namespaces > 0) or set [chain] rpc_url to a node "
            "that only the platform can reach"
        )
    return [unshare, "--user", "--net", *command]


def start_anvil(
    port: int,
    chain_id: int = 31337,
    state_file: Path | None = None,
    log_file: Path | None = None,
    block_time: float | None = None,
    startup_timeout: float = 30,
    extra_args: Sequence[str] = (),
    ipc_path: Path | None = None,
) -> AnvilNode:
    """Start anvil; with `state_file`, chain state survives restarts.

    Without `ipc_path`: on 127.0.0.1:port with the public dev accounts (tests). With it (the embedded platform
    chain): reachable only through that socket, from a network namespace of its own, with no dev accounts.
    """
    command = [str(node_bin("anvil")), "--host", "127.0.0.1", "--port", str(port), "--chain-id", str(chain_id)]
    command += ["--accounts", "0" if ipc_path else str(DEFAULT_ACCOUNTS), "--silent"]
    rpc_url = f"http://127.0.0.1:{port}"
    if ipc_path is not None:
        if len(str(ipc_path).encode()) > MAX_SOCKET_PATH:
            raise AnvilError(f"the IPC socket path {ipc_path} is too long for a Unix socket: use a shorter data dir")
        ipc_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        ipc_path.unlink(missing_ok=True)  # a socket left by a killed anvil
        command = isolated_command([*command, "--ipc", str(ipc_path)])
        rpc_url = str(ipc_path)
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
    node = AnvilNode(process=process, rpc_url=rpc_url, chain_id=chain_id)
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AnvilError(f"anvil exited with code {process.returncode} (port {port} in use?)")
        try:
            answered = int(str(rpc_call(node.rpc_url, "eth_chainId", timeout=1)), 16)
        except (httpx.HTTPError, AnvilError, IPCError):
            time.sleep(0.1)
            continue
        if answered != chain_id:
            node.stop()
            raise AnvilError(f"port {port} answers chain id {answered}, expected {chain_id}: another node?")
        return node
    node.stop()
    raise AnvilError(f"anvil did not answer on port {port} within {startup_timeout:.0f} s")
