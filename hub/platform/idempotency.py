"""`Idempotency-Key` for the platform's writes: a retry with the same key gets the first answer, not a second write.

A client that sent an upload, publish, claim or faucet request and lost the connection (a 503 from the proxy, a
reset) cannot know whether it happened; retrying without a key would be refused as a duplicate of its own rows, or
mint twice. With a key (any 1–255 visible ASCII characters; the SDK sends a UUID per call) the platform stores the
first successful answer under (user, method + path, key) and replays it — status and JSON body, with the header
`Idempotent-Replayed: true` — for 24 hours. While the first request still runs, a retry gets 409. Errors are not
stored: a refused request may be corrected and sent again with the same key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from hub.auth import HubUser
from hub.platform.idempotency_keys import IdempotencyKey
from hub.rewards.models import utcnow

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
ABANDONED = timedelta(minutes=15)  # a "running" claim this old belongs to a request that died: a retry takes over
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


async def idempotent(
    request: Request, user: HubUser, handler: Callable[[], Awaitable[Any]], status_code: int = 200
) -> Any:
    """Run `handler` once per Idempotency-Key (none given: just run it). `status_code`: the route's success status
    for a handler that returns a plain dict."""
    key = request.headers.get(HEADER)
    if key is None:
        return await handler()
    if not _KEY.match(key):
        raise HTTPException(400, f"{HEADER} must be 1-255 visible ASCII characters")
    engine = request.app.state.runtime.engine
    endpoint = f"{request.method} {request.url.path}"[:1024]
    replay = await run_in_threadpool(_claim, engine, user.name, endpoint, key)
    if replay is not None:
        return replay
    try:
        result = await handler()
    except BaseException:
        await run_in_threadpool(_forget, engine, user.name, endpoint, key)  # a corrected retry may reuse the key
        raise
    status, body = _as_stored(result, status_code)
    if status >= 400:
        await run_in_threadpool(_forget, engine, user.name, endpoint, key)
    else:
        await run_in_threadpool(_store, engine, user.name, endpoint, key, status, body)
    return result


def _claim(engine: Any, username: str, endpoint: str, key: str) -> Response | None:
    """Insert the running marker; if the key is known: the stored answer, 409 while it runs, or take it over."""
    now = utcnow()
    with Session(engine) as session:
        session.exec(delete(IdempotencyKey).where(col(IdempotencyKey.created_at) < now - KEEP))
        session.add(IdempotencyKey(username=username, endpoint=endpoint, key=key, created_at=now))
        try:
            session.commit()
            return None
        except IntegrityError:
            session.rollback()
        found = session.exec(
            select(IdempotencyKey).where(
                IdempotencyKey.username == username, IdempotencyKey.endpoint == endpoint, IdempotencyKey.key == key
            )
        ).one()
        if found.status is not None:
            return JSONResponse(found.response, status_code=found.status, headers={"Idempotent-Replayed": "true"})
        if found.created_at.replace(tzinfo=now.tzinfo) > now - ABANDONED:
            raise HTTPException(409, f"a request with this {HEADER} is still in progress; retry in a moment")
        found.created_at = now  # its request died: this one runs it
        session.add(found)
        session.commit()
        return None


def _as_stored(result: Any, status_code: int) -> tuple[int, Any]:
    if isinstance(result, JSONResponse):
        return result.status_code, json.loads(bytes(result.body))
    if isinstance(result, Response):
        return result.status_code, None
    return status_code, jsonable_encoder(result)


def _store(engine: Any, username: str, endpoint: str, key: str, status: int, body: Any) -> None:
    with Session(engine) as session:
        row = session.exec(
            select(IdempotencyKey).where(
                IdempotencyKey.username == username, IdempotencyKey.endpoint == endpoint, IdempotencyKey.key == key
            )
        ).one()
        row.status, row.response = status, body
        session.add(row)
        session.commit()


def _forget(engine: Any, username: str, endpoint: str, key: str) -> None:
    with Session(engine) as session:
        session.exec(
            delete(IdempotencyKey).where(
                col(IdempotencyKey.username) == username,
                col(IdempotencyKey.endpoint) == endpoint,
                col(IdempotencyKey.key) == key,
                col(IdempotencyKey.status).is_(None),
            )
        )
        session.commit()
