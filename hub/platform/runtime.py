"""What the platform's features share at run time: settings and the SQL engine, reached from requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hub.settings import Settings


@dataclass
class PlatformRuntime:
    settings: Settings
    engine: Engine
    # Features keep their long-lived objects here (e.g. "ledger", "relay"), keyed by feature name.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Feature:
    """One part of the platform API: its routes and what it starts and stops with the service."""

    name: str
    router: APIRouter | None = None
    startup: Callable[[PlatformRuntime], Awaitable[None]] | None = None
    shutdown: Callable[[PlatformRuntime], Awaitable[None]] | None = None


async def stop_task(runtime: PlatformRuntime, key: str) -> None:
    """Cancel the background task a feature keeps in `runtime.extras[key]` and wait until it has ended."""
    task: asyncio.Task | None = runtime.extras.pop(key, None)
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def get_runtime(request: Request) -> PlatformRuntime:
    """FastAPI dependency: the running platform."""
    return request.app.state.runtime


def get_session(request: Request) -> Iterator[Session]:
    """FastAPI dependency: one SQL session per request; the handler commits what it means to keep."""
    with Session(request.app.state.runtime.engine) as session:
        yield session
