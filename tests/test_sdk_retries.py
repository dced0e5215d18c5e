"""The SDK retries a write whose connection dropped, with the same Idempotency-Key, against a real socket server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import openledger_sdk
from openledger_sdk.errors import OpenLedgerError
from tests.hub_harness import free_port


class FlakyServer:
    """Answers HTTP on loopback; the first `drops` connections are closed after the request arrives (no answer)."""

    def __init__(self, drops: int) -> None:
        self.drops, self.requests = drops, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
                if headers.get("transfer-encoding") == "chunked":
                    while not body.endswith(b"0\r\n\r\n"):
                        body += conn.recv(65536)
                    body = _dechunk(body)
                length = int(headers.get("content-length", "0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests.append((head.decode().split("\r\n")[0], headers, body))
                if len(self.requests) <= self.drops:
                    continue  # closed without an answer: what a client sees when the service dies mid-request
                payload = b'{"ok": true}'
                conn.sendall(
                    b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )

    def close(self) -> None:
        self.sock.close()


def _dechunk(raw: bytes) -> bytes:
    out = b""
    while True:
        size, _, raw = raw.partition(b"\r\n")
        if int(size, 16) == 0:
            return out
        out, raw = out + raw[: int(size, 16)], raw[int(size, 16) + 2 :]


@pytest.fixture
def flaky() -> Iterator[FlakyServer]:
    server = FlakyServer(drops=2)
    yield server
    server.close()


def test_a_dropped_write_is_retried_with_the_same_idempotency_key(flaky: FlakyServer) -> None:
    ol = openledger_sdk.connect(f"http://127.0.0.1:{flaky.port}", "token")
    assert ol.request("POST", "platform", "api/datanets/x/rows", json={"rows": [{"a": 1}]}) == {"ok": True}
    assert len(flaky.requests) == 3
    keys = {headers.get("idempotency-key") for _, headers, _ in flaky.requests}
    assert len(keys) == 1 and None not in keys  # one key, sent on every attempt
    assert {body for _, _, body in flaky.requests} == {b'{"rows":[{"a":1}]}'}


def test_a_streamed_upload_is_sent_again_whole(flaky: FlakyServer) -> None:
    ol = openledger_sdk.connect(f"http://127.0.0.1:{flaky.port}", "token")
    answer = ol.send("POST", "/services/platform/api/datanets/x/files", content=lambda: iter([b"a,b\n", b"1,2\n"]))
    assert answer.status_code == 201
    assert [body for _, _, body in flaky.requests] == [b"a,b\n1,2\n"] * 3


def test_reads_carry_no_key_and_a_dead_host_is_reported() -> None:
    server = FlakyServer(drops=0)
    try:
        ol = openledger_sdk.connect(f"http://127.0.0.1:{server.port}", "token")
        ol.request("GET", "platform", "api/me")
        assert "idempotency-key" not in server.requests[0][1]
    finally:
        server.close()
    with pytest.raises(OpenLedgerError, match="cannot reach"):
        openledger_sdk.connect(f"http://127.0.0.1:{free_port()}", "token").request("GET", "platform", "api/me")


def test_an_inference_is_not_sent_twice(flaky: FlakyServer) -> None:
    """OpenLoRA does not deduplicate by key: a retried chat would be generated and paid again."""
    ol = openledger_sdk.connect(f"http://127.0.0.1:{flaky.port}", "token")
    with pytest.raises(OpenLedgerError, match="cannot reach"):
        ol.openlora.chat("m", [{"role": "user", "content": "hi"}])
    assert len(flaky.requests) == 1
