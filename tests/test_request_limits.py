"""Bounded request bodies (hub.request_limits) on a real ServiceApp served by uvicorn, and the recursion guard.

The end-to-end checks through the hub's proxy against the real platform are in tests/test_hardening_e2e.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi import Body, Request

from hub.request_limits import BodyLimits, json_depth
from hub.service_app import ServiceApp
from tests.local_server import serving

DEEP = b"[" * 30_000 + b"]" * 30_000  # 60 kB: under the size limit, far over the depth limit


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    limits = BodyLimits(max_bytes=64 * 1024, max_json_depth=32, uploads=((r"/up$", 10**6),))
    app = ServiceApp("limits-test", limits=limits)

    @app.router.post("/echo")
    async def echo(payload: dict | list = Body(...)) -> dict:
        return {"items": len(payload)}

    @app.router.post("/up")
    async def upload(request: Request) -> dict:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    with serving(app.finish()) as url:
        yield f"{url}/services/limits-test"


def test_deeply_nested_json_is_refused_before_parsing(service: str) -> None:
    answer = httpx.post(service + "/echo", content=DEEP, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert "deeper than 32" in answer.json()["detail"]
    # Within the depth limit, brackets inside strings do not count and the service still answers.
    ok = httpx.post(service + "/echo", json={"text": "[" * 1000, "nested": [[[1]]]})
    assert ok.status_code == 200 and ok.json() == {"items": 2}


def test_oversized_bodies_are_refused(service: str) -> None:
    big = json.dumps({"blob": "x" * 100_000}).encode()
    assert httpx.post(service + "/echo", content=big, headers={"Content-Type": "application/json"}).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the cap applies while it streams
        yield b'{"blob": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    answer = httpx.post(service + "/echo", content=chunked(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and "limit of 65536 bytes" in answer.json()["detail"]
    # An upload route streams with its own larger limit.
    assert httpx.post(service + "/up", content=b"y" * 200_000).json() == {"size": 200_000}
    assert httpx.post(service + "/up", content=(b"y" * 1000 for _ in range(1100))).status_code == 413


def test_a_declared_huge_body_is_refused_before_it_is_sent(service: str) -> None:
    host, port = service.removeprefix("http://").split("/")[0].split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /services/limits-test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 104857600\r\n\r\n{"
        )
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 413"), answer[:200]
    assert time.monotonic() - started < 5


def test_json_depth_counts_structure_not_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "]]]]"}]}') == 3
    assert json_depth('"[[[["') == 0
    assert json_depth(DEEP) == 30_000


def test_no_service_import_leaves_the_recursion_limit_raised() -> None:
    """py_ecc (under eth_account and web3) sets sys.setrecursionlimit(100000) at import; with it, deep JSON overflowed
    the C stack of the platform (a segfault). Importing every hub module must leave CPython's default."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hub\n"
        "for info in pkgutil.walk_packages(hub.__path__, 'hub.'):\n"
        "    if '.migrations' in info.name or info.name.endswith('__main__'):\n"
        "        continue\n"
        "    importlib.import_module(info.name)\n"
        "    assert sys.getrecursionlimit() == 1000, (info.name, sys.getrecursionlimit())\n"
        "import web3, eth_account, py_ecc\n"
        "print(sys.getrecursionlimit())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "1000"
