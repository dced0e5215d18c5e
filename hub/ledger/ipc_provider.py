"""web3's IPC provider, failing at once when the node went away.

web3's IPCProvider keeps one socket open; when the node behind it dies (the chain service restarting a killed anvil),
every `recv` returns end-of-file and web3 spins on it until its timeout (30 s, at full CPU), then the next request
reconnects. Measured with a SIGKILLed anvil: the relay stalled 30 s after anvil was back. Here end-of-file raises a
ConnectionError at once; web3's socket wrapper then closes the socket and the next request opens a new one.
"""

from __future__ import annotations

from json import JSONDecodeError

from web3._utils.threads import Timeout
from web3.providers.ipc import IPCProvider, has_valid_json_rpc_ending
from web3.types import RPCResponse


class ReconnectingIPCProvider(IPCProvider):
    def _make_request(self, request: bytes) -> RPCResponse:
        with self._lock, self._socket as sock:
            try:
                sock.sendall(request + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                sock = self._socket.reset()  # the node restarted since the last request: one new connection
                sock.sendall(request + b"\n")
            raw_response = b""
            with Timeout(self.timeout) as timeout:
                while True:
                    try:
                        chunk = sock.recv(4096)
                    except TimeoutError:
                        timeout.sleep(0)
                        continue
                    if not chunk:  # the node closed the connection: it will not answer on this socket
                        raise ConnectionError(f"the node at {self.ipc_path} closed the IPC connection")
                    raw_response += chunk
                    if has_valid_json_rpc_ending(raw_response):
                        try:
                            return self.decode_rpc_response(raw_response)
                        except JSONDecodeError:
                            continue
                    timeout.sleep(0)
