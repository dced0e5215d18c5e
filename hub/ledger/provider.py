"""A web3 provider for a chain address: an HTTP(S) JSON-RPC URL, or the path of a node's IPC socket."""

from __future__ import annotations

from web3 import Web3
from web3.providers import BaseProvider

from hub.ledger.ipc_provider import ReconnectingIPCProvider


def is_ipc(url: str) -> bool:
    """The embedded anvil is reached through a Unix socket path, every other node through a URL."""
    return not url.startswith(("http://", "https://", "ws://", "wss://"))


def make_provider(url: str, timeout: float = 30, retries: bool = True) -> BaseProvider:
    if is_ipc(url):
        return ReconnectingIPCProvider(url, timeout=int(max(1, timeout)))  # web3's spins 30 s on a dead node
    options: dict = {} if retries else {"exception_retry_configuration": None}
    return Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}, **options)
