"""`x-request-id` on every OpenLoRA answer."""

from __future__ import annotations

import uuid
from typing import Any


class RequestIdMiddleware:
    """Every answer carries an id to quote in a bug report, as OpenAI's do (`x-request-id`). Plain ASGI, not
    BaseHTTPMiddleware: that one hides a client's disconnect from the handler, and an abandoned request must be
    cancelled."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"req_{uuid.uuid4().hex}".encode()

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id)]
            await send(message)

        await self.app(scope, receive, send_with_id)
