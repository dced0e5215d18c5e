"""Idempotency-Key (hub.platform.idempotency) on a real FastAPI app over HTTP, on SQLite and PostgreSQL:
a retry replays the first answer, a concurrent retry gets 409, errors are not kept, keys are per user and endpoint.
The platform's own routes (uploads, publish, faucet) are exercised end to end in tests/test_hardening_e2e.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request

from hub.auth import HubUser
from hub.db import make_engine, migrate
from hub.platform.idempotency import idempotent
from tests.local_server import serving
from tests.postgres import postgres_bin, temporary_postgres


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('idem') / 'platform.sqlite'}"
        return
    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries are not installed on this machine")
    with temporary_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def service(database: str) -> Iterator[dict]:
    engine = make_engine(database)
    migrate(engine)
    app = FastAPI()
    app.state.runtime = SimpleNamespace(engine=engine)
    state = {"writes": 0, "fail": False, "gate": threading.Event()}

    def user(request: Request) -> HubUser:
        name = request.headers.get("X-User", "alice")
        return HubUser(name=name, admin=False, groups=(), scopes=frozenset(), kind="user")

    async def write() -> dict:
        if state["fail"]:
            raise HTTPException(422, "refused")
        state["writes"] += 1
        return {"write": state["writes"]}

    @app.post("/things", status_code=201)
    async def things(request: Request) -> dict:
        return await idempotent(request, user(request), write, 201)

    @app.post("/slow")
    async def slow(request: Request) -> dict:
        async def wait() -> dict:
            while not state["gate"].is_set():
                await asyncio.sleep(0.02)
            return {"slow": True}

        return await idempotent(request, user(request), wait)

    with serving(app) as url:
        yield {"url": url, "state": state}
    engine.dispose()


def test_a_retry_with_the_same_key_returns_the_first_answer(service: dict) -> None:
    url, key = service["url"], {"Idempotency-Key": "k-1"}
    first = httpx.post(url + "/things", headers=key)
    again = httpx.post(url + "/things", headers=key)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert httpx.post(url + "/things").json()["write"] == first.json()["write"] + 1  # no key: a new write
    other_user = httpx.post(url + "/things", headers=key | {"X-User": "bob"})  # keys are per user
    assert other_user.json()["write"] == first.json()["write"] + 2


def test_errors_are_not_kept_and_bad_keys_are_refused(service: dict) -> None:
    url, key, state = service["url"], {"Idempotency-Key": "k-2"}, service["state"]
    state["fail"] = True
    assert httpx.post(url + "/things", headers=key).status_code == 422
    state["fail"] = False
    assert httpx.post(url + "/things", headers=key).status_code == 201  # the corrected retry runs
    assert httpx.post(url + "/things", headers={"Idempotency-Key": "has space"}).status_code == 400
    assert httpx.post(url + "/things", headers={"Idempotency-Key": "x" * 256}).status_code == 400


def test_a_retry_while_the_first_still_runs_gets_409(service: dict) -> None:
    url, key, state = service["url"], {"Idempotency-Key": "k-3"}, service["state"]
    answers: list[httpx.Response] = []
    first = threading.Thread(target=lambda: answers.append(httpx.post(url + "/slow", headers=key, timeout=30)))
    first.start()
    time.sleep(0.5)
    assert httpx.post(url + "/slow", headers=key).status_code == 409
    state["gate"].set()
    first.join()
    assert answers[0].status_code == 200
    assert httpx.post(url + "/slow", headers=key).headers["Idempotent-Replayed"] == "true"
