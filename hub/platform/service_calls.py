"""Blocking service code called from the async routes of the features that have a service (datanets, models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

T = TypeVar("T")


async def run_service(errors: type[Exception], fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` off the event loop; an `errors` exception becomes the HTTP answer from its status and detail.

    Each feature passes its own error class (DatanetError, ModelError), so any other exception still fails with 500.
    """
    try:
        return await run_in_threadpool(fn, *args)
    except errors as err:
        raise HTTPException(err.status, err.detail) from None  # type: ignore[attr-defined]
