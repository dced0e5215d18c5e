"""A service that listens at once and loads its heavy state in the background.

JupyterHub waits for each managed service to answer before it starts the next; a service that loads a model before
it binds its port (OpenLoRA: torch, the base model, its attribution index) can miss that wait on a busy machine, and
the hub exits. `DeferredApp` answers from the first second: `/health` says `loading` (HTTP 503) and every other path
503 with the same reason, until `build()` (run in a thread) returns the real ASGI app; from then on every request,
and the app's own lifespan (startup / shutdown), is the real app's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("hub.service")

Scope = dict[str, Any]
ASGIApp = Callable[..., Any]


class DeferredApp:
    def __init__(self, name: str, build: Callable[[], ASGIApp]) -> None:
        self.name = name
        self._build = build
        self.app: ASGIApp | None = None
        self.error: str | None = None
        self.started = time.monotonic()
        self._inner_lifespan: _Lifespan | None = None

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._not_yet(scope, send)
        else:  # a websocket before the app exists: refuse it
            await send({"type": "websocket.close", "code": 1013})

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        loading: asyncio.Task | None = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                loading = asyncio.create_task(self._load(), name=f"{self.name}-load")
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if loading is not None and not loading.done():
                    loading.cancel()  # the thread finishes on its own; the process is exiting anyway
                if self._inner_lifespan is not None:
                    await self._inner_lifespan.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _load(self) -> None:
        try:
            app = await asyncio.to_thread(self._build)
            lifespan = _Lifespan(app)
            await lifespan.startup()
        except Exception as err:  # noqa: BLE001 - reported on /health; the service keeps answering
            self.error = f"{type(err).__name__}: {err}"
            log.exception("%s: loading failed", self.name)
            return
        self._inner_lifespan, self.app = lifespan, app
        log.info("%s: loaded in %.1f s", self.name, time.monotonic() - self.started)

    async def _not_yet(self, scope: Scope, send: Callable) -> None:
        waited = time.monotonic() - self.started
        body: dict[str, Any] = {"service": self.name, "status": "error" if self.error else "loading"}
        body["reason"] = self.error or f"loading for {waited:.0f} s"
        if not scope["path"].rstrip("/").endswith("/health"):
            body = {"detail": f"{self.name} is not ready yet ({body['reason']})"}
        payload = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"5")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class _Lifespan:
    """Drives an ASGI app's lifespan by hand: its startup once it is built, its shutdown with the service's."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._events: dict[str, asyncio.Event] = {"startup": asyncio.Event(), "shutdown": asyncio.Event()}
        self._task: asyncio.Task | None = None

    async def _send(self, message: dict[str, Any]) -> None:
        phase = message["type"].split(".")[1]  # lifespan.startup.complete / .failed, lifespan.shutdown...
        if message["type"].endswith("failed"):
            log.error("lifespan %s failed: %s", phase, message.get("message"))
        self._events[phase].set()

    async def startup(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self._app(scope, self._inbox.get, self._send))
        await self._inbox.put({"type": "lifespan.startup"})
        await asyncio.wait(
            [asyncio.create_task(self._events["startup"].wait()), self._task], return_when="FIRST_COMPLETED"
        )

    async def shutdown(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._inbox.put({"type": "lifespan.shutdown"})
        await asyncio.wait([self._task], timeout=10)
