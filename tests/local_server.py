"""Serve an ASGI app on a free loopback port in a thread, for tests that talk to a real HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from tests.hub_harness import free_port


@contextmanager
def serving(app: object, startup_timeout: float = 20) -> Iterator[str]:
    """Yield the app's base URL (http://127.0.0.1:<port>) while uvicorn serves it; stop it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, f"the test server did not start in {startup_timeout:.0f} s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
