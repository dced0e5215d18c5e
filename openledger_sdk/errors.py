"""Errors the SDK raises: one type, with the platform's own explanation."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx


class OpenLedgerError(Exception):
    """A platform call failed; `status` is the HTTP status (0 when the platform could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotConnectedError(OpenLedgerError):
    """No platform URL or token was given and none is in the environment."""


def error_message(response: httpx.Response) -> str:
    """A failed call's one-line message: method, path, status and what the service said."""
    try:
        body = response.json()
        # The platform's FastAPI services say `detail`; OpenLoRA answers OpenAI's {"error": {"message": ...}}.
        detail = body.get("detail") or (body.get("error") or {}).get("message") or response.text
    except (ValueError, AttributeError):
        detail = response.text[:300]
    return f"{response.request.method} {response.request.url.path} → {response.status_code}: {detail}"
