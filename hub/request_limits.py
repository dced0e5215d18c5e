"""Bounded request bodies for every service: one ASGI middleware, set up once in each service's app.

- A declared Content-Length over the route's limit is answered 413 before a byte of the body is read.
- A body without Content-Length (chunked) is cut off with 413 as soon as it passes the limit.
- JSON bodies (all bodies of routes with the default limit) are scanned for nesting depth before any parser runs:
  deeper than `max_json_depth` is 400. `json.loads` recurses per level in C; with the recursion limit raised (see
  `hub.recursion`) a 100,000-deep array overflowed the C stack and killed the process.

Upload routes that stream their own bodies (datanet files and rows, model publish) get a larger limit by path;
they parse with `json_depth_ok` themselves where they parse JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ErrorBody = Callable[[int, str], dict[str, Any]]

DEFAULT_MAX_BYTES = 1 << 20  # 1 MiB: far above any JSON request of ours; uploads have their own limits
DEFAULT_MAX_DEPTH = 64
# A JSON string (escapes included) as one token, or one bracket: strings are skipped whole, in C.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPEN = frozenset(b"[{")
DRAIN_MAX_BYTES = 256 << 20  # of a refused body, read and dropped at most this much before closing
DRAIN_TOTAL_S = 30.0
DRAIN_IDLE_S = 1.0


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays/objects in `data` (brackets inside strings do not count); no recursion."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    depth = deepest = 0
    for match in _TOKENS.finditer(raw):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif first != 0x22:  # a closing bracket; a string (0x22 = '"') changes nothing
            depth -= 1
    return deepest


def json_depth_ok(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> None:
    """ValueError when `data` nests deeper than `max_depth` (call before json.loads)."""
    if json_depth(data) > max_depth:
        raise ValueError(f"JSON nested deeper than {max_depth} levels")


def default_error(status: int, message: str) -> dict[str, Any]:
    return {"detail": message}  # FastAPI's shape, as every platform and chain error


@dataclass(frozen=True)
class BodyLimits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_json_depth: int = DEFAULT_MAX_DEPTH
    # (path regex, limit): routes that stream large uploads themselves; matched with re.search on the path.
    uploads: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    def upload_limit(self, path: str) -> int | None:
        for pattern, limit in self.uploads:
            if re.search(pattern, path):
                return limit
        return None


class BodyTooLargeError(Exception):
    """More body bytes than the limit arrived."""


class BoundedBody:
    """ASGI middleware enforcing `BodyLimits`; errors answer in the service's own JSON shape (`error_body`)."""

    def __init__(self, app: ASGIApp, limits: BodyLimits, error_body: ErrorBody = default_error) -> None:
        self.app, self.limits, self.error_body = app, limits, error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self.limits.upload_limit(scope.get("path", ""))
        limit = upload if upload is not None else self.limits.max_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not (declared.isascii() and declared.isdigit()):
                await self._refuse(send, 400, f"Content-Length {declared[:40]!r} is not a number")
                return
            if int(declared) > limit:
                await self._refuse(
                    send, 413, f"the request body is {declared} bytes; the limit is {limit} bytes", receive
                )
                return
        if upload is not None:
            await self._stream_capped(scope, receive, send, limit)
            return
        try:
            body = await _read_all(receive, limit)
        except BodyTooLargeError:
            await self._refuse(send, 413, f"the request body is over the limit of {limit} bytes", receive)
            return
        if body and json_depth(body) > self.limits.max_json_depth:
            await self._refuse(send, 400, f"the JSON body nests deeper than {self.limits.max_json_depth} levels")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _stream_capped(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Uploads stream through; past `limit` the app's next read raises a 413 HTTPException, which the app's own
        exception handlers answer in its error shape."""
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"the request body is over the limit of {limit} bytes")
            return message

        await self.app(scope, capped, send)

    async def _refuse(self, send: Send, status: int, message: str, receive: Receive | None = None) -> None:
        payload = json.dumps(self.error_body(status, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        if receive is not None:
            await _drain(receive)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


async def _drain(receive: Receive) -> None:
    """Read and drop the rest of a refused body (bounded), after the answer went out. A proxy in front (the hub's)
    still writing the body would otherwise hit a closed connection and answer 503 instead of our 413; a client that
    stalls is let go after DRAIN_IDLE_S without data."""
    drained, deadline = 0, time.monotonic() + DRAIN_TOTAL_S
    while drained < DRAIN_MAX_BYTES and time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE_S)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        drained += len(message.get("body", b""))


async def _read_all(receive: Receive, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away: the app sees an empty body and its own disconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # afterwards: disconnect notices, as the app would see them

    return replay


def install(app: Any, limits: BodyLimits, error_body: ErrorBody = default_error) -> None:
    """Add the middleware to a FastAPI/Starlette app: before any other middleware that reads bodies (those added
    later wrap it)."""
    app.add_middleware(BoundedBody, limits=limits, error_body=error_body)
