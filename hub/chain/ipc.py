"""JSON-RPC over a node's IPC socket (anvil answers each request with one JSON document and a newline)."""

from __future__ import annotations

import asyncio
import json
import socket

MAX_ANSWER = 64 << 20  # an eth_getLogs answer can be large; never read without bound


class IPCError(Exception):
    """The socket is missing, refused the connection, closed early or answered garbage."""


def _decode(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError as err:
        raise IPCError(f"the node's IPC answer is not JSON: {err}") from None


def ipc_request(path: str, payload: object, timeout: float = 10) -> object:
    """Send one JSON-RPC request (or batch) to the socket at `path`; return the decoded answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
            sock.sendall(json.dumps(payload).encode())
            buffer = b""
            while not buffer.endswith(b"\n"):
                chunk = sock.recv(1 << 16)
                if not chunk or len(buffer) > MAX_ANSWER:
                    raise IPCError("the node closed the IPC connection before answering")
                buffer += chunk
        except OSError as err:
            raise IPCError(f"cannot talk to the node at {path}: {err}") from None
    return _decode(buffer)


async def ipc_request_async(path: str, payload: object, timeout: float = 30) -> object:
    """The asyncio form of `ipc_request`, for the chain gateway."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path, limit=MAX_ANSWER), timeout)
    except (OSError, TimeoutError) as err:
        raise IPCError(f"cannot talk to the node at {path}: {err}") from None
    try:
        writer.write(json.dumps(payload).encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError, ValueError) as err:
        raise IPCError(f"the node at {path} did not answer: {err}") from None
    finally:
        writer.close()
    if not line:
        raise IPCError("the node closed the IPC connection before answering")
    return _decode(line)
