"""Priced OpenLoRA requests reserve their maximum cost atomically, on SQLite and on PostgreSQL.

The real OpenLoRA app (tiny model, real engine) over HTTP with the real PlatformMetering on a real database; only
the chain balance read is replaced by a fixed number (the chain is exercised end to end in test_hardening_e2e.py).
Before this, 50 requests at once from a payer who could afford 3 were all served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import openai
import pytest
import torch
from fastapi import Request
from sqlmodel import Session, select

from hub.auth import HubUser, current_user
from hub.db import make_engine, migrate
from hub.keys.store import WalletKeyStore
from hub.keys.wallets import ensure_wallet
from hub.models.models import PublishedModel
from hub.openlora import EngineConfig, OpenLoRAEngine
from hub.openlora.api import create_app
from hub.openlora.metering import PlatformMetering
from hub.rewards.models import InferenceRecordRow, utcnow
from hub.rewards.reservations import FeeReservation, NotEnoughFundsError, Reservations
from hub.rewards.split import inference_fee
from hub.settings import PathSettings, Settings
from tests.local_server import serving
from tests.postgres import postgres_bin, temporary_postgres
from tests.tiny_model import ADAPTER_SPECS, shared_assets

torch.set_num_threads(2)
MODEL = list(ADAPTER_SPECS)[0]
PRICE_WEI = 5 * 10**17  # 0.5 OPEN per 1k tokens
PROMPT = [11, 12, 13, 14]  # token ids: the prompt's length is exact
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(postgres_bin() is None, reason="no pg"))]


class FixedBalance:
    """The chain's answer to balanceOf, fixed per test (what the real PayerFunds reads from the token contract)."""

    def __init__(self) -> None:
        self.wei = 0

    def balance(self, payer: str, address: str) -> int | None:
        return self.wei


@pytest.fixture(scope="module")
def engine() -> Iterator[OpenLoRAEngine]:
    model_dir, adapters = shared_assets()
    engine = OpenLoRAEngine(
        model_dir, adapters_dir=adapters, config=EngineConfig(max_batch_size=8, max_slots=2), model_name="tiny-base"
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('reservations') / 'platform.sqlite'}"
    else:
        with temporary_postgres() as url:
            yield url


@pytest.fixture(scope="module")
def served(engine: OpenLoRAEngine, database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(paths=PathSettings(data_dir=data_dir))
    sql = make_engine(database)
    migrate(sql)
    owner = ensure_wallet(sql, "owner", WalletKeyStore.for_data_dir(data_dir))
    with Session(sql) as session:
        session.add(
            PublishedModel(
                name=MODEL,
                owner="owner",
                owner_address=owner.address,
                chain_id="0x" + "ab" * 32,
                base_model="tiny-base",
                base_model_ref="tiny-base",
                base_weights_sha256="0" * 64,
                manifest_hash="0" * 64,
                adapter_sha256="0" * 64,
                price_wei=str(PRICE_WEI),
            )
        )
        session.commit()
    funds = FixedBalance()
    metering = PlatformMetering(settings, sql, funds=funds)
    app = create_app(engine, metering=metering, service_prefix="")

    def payer(request: Request) -> HubUser:
        name = request.headers["Authorization"].partition(" ")[2]
        return HubUser(name=name, admin=False, groups=(), scopes=frozenset({"access:services"}), kind="user")

    app.dependency_overrides[current_user] = payer
    most = inference_fee(len(PROMPT), 1, PRICE_WEI, PRICE_WEI, settings.rewards.platform_fee_wei)
    with serving(app) as url:
        yield {"url": url, "sql": sql, "funds": funds, "most": most, "metering": metering}
    sql.dispose()


def _ask(url: str, payer: str) -> int:
    answer = httpx.post(
        url + "/v1/completions",
        json={"model": MODEL, "prompt": PROMPT, "max_tokens": 1, "temperature": 0},
        headers={"Authorization": f"Bearer {payer}"},
        timeout=120,
    )
    if answer.status_code == 429:
        assert answer.json()["error"]["code"] == "insufficient_quota"
    return answer.status_code


def _fees(sql, payer: str) -> list[int]:  # noqa: ANN001
    with Session(sql) as session:
        return [
            int(fee) for fee in session.exec(select(InferenceRecordRow.fee).where(InferenceRecordRow.payer == payer))
        ]


def test_fifty_concurrent_requests_from_a_payer_who_can_afford_three(served: dict) -> None:
    payer = f"payer-{served['sql'].dialect.name}"
    served["funds"].wei = 3 * served["most"]  # exactly three requests at their longest
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: _ask(served["url"], payer), range(50)))
    assert statuses.count(200) == 3, (statuses, _fees(served["sql"], payer), served["most"])
    assert statuses.count(429) == 47
    fees = _fees(served["sql"], payer)
    assert len(fees) == 3 and sum(fees) <= served["funds"].wei  # settlement never sees more than the payer held
    with Session(served["sql"]) as session:  # every hold was consumed by its record or released
        assert session.exec(select(FeeReservation).where(FeeReservation.payer == payer)).all() == []


def test_the_refusal_is_openais_insufficient_quota(served: dict) -> None:
    served["funds"].wei = served["most"] - 1
    client = openai.OpenAI(base_url=served["url"] + "/v1", api_key="poor-payer", max_retries=3)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as refused:
        client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1)
    assert refused.value.status_code == 429 and refused.value.code == "insufficient_quota"
    assert "may cost up to" in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert time.monotonic() - started < 2  # so the openai client does not retry it
    # The base model is free and needs no reservation.
    assert client.completions.create(model="tiny-base", prompt=PROMPT, max_tokens=1).usage.completion_tokens >= 0


def test_a_failed_request_releases_its_reservation(served: dict, engine: OpenLoRAEngine) -> None:
    payer = f"fails-{served['sql'].dialect.name}"
    served["funds"].wei = 10**24
    too_long = {"model": MODEL, "prompt": PROMPT, "max_tokens": engine.max_seq_len}  # reserved, then refused
    answer = httpx.post(served["url"] + "/v1/completions", json=too_long, headers={"Authorization": f"Bearer {payer}"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "context_length_exceeded"
    with Session(served["sql"]) as session:
        assert session.exec(select(FeeReservation).where(FeeReservation.payer == payer)).all() == []


def test_reservations_are_atomic_expire_and_release(served: dict) -> None:
    reservations = Reservations(served["sql"], ttl_s=60)
    payer = f"direct-{served['sql'].dialect.name}"
    barrier = threading.Barrier(20)

    def reserve(i: int) -> str | None:
        barrier.wait()
        try:
            reservations.reserve(payer, f"{payer}-{i}", 10, balance=30)
            return f"{payer}-{i}"
        except NotEnoughFundsError:
            return None

    with ThreadPoolExecutor(max_workers=20) as pool:
        granted = [rid for rid in pool.map(reserve, range(20)) if rid]
    assert len(granted) == 3
    reservations.release(granted[0])
    reservations.reserve(payer, f"{payer}-again", 10, balance=30)
    with pytest.raises(NotEnoughFundsError):
        reservations.reserve(payer, f"{payer}-more", 10, balance=30)
    # A crashed process's hold lapses: expire them all and the money is spendable again.
    with Session(served["sql"]) as session:
        for row in session.exec(select(FeeReservation).where(FeeReservation.payer == payer)):
            row.expires_at = utcnow() - timedelta(seconds=1)
            session.add(row)
        session.commit()
    reservations.reserve(payer, f"{payer}-after-expiry", 30, balance=30)


def test_a_stream_is_charged_once_and_holds_nothing_after(served: dict) -> None:
    payer = f"streamer-{served['sql'].dialect.name}"
    served["funds"].wei = served["most"]
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 1, "stream": True}
    with httpx.stream(
        "POST", served["url"] + "/v1/completions", json=body, headers={"Authorization": f"Bearer {payer}"}
    ) as stream:
        assert stream.status_code == 200
        list(stream.iter_lines())
    assert _ask(served["url"], payer) == 429  # the stream's real fee is recorded, its hold gone
    assert len(_fees(served["sql"], payer)) == 1


def test_a_stream_the_client_abandons_gives_its_hold_back(served: dict, engine: OpenLoRAEngine) -> None:
    payer = f"abandons-{served['sql'].dialect.name}"
    served["funds"].wei = 10**24
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": engine.max_seq_len - len(PROMPT), "stream": True}
    with httpx.stream(
        "POST", served["url"] + "/v1/completions", json=body, headers={"Authorization": f"Bearer {payer}"}
    ) as stream:
        assert stream.status_code == 200
        next(stream.iter_lines())  # the first piece, then the client goes away
    deadline = time.monotonic() + 10
    while True:
        with Session(served["sql"]) as session:
            holds = session.exec(select(FeeReservation).where(FeeReservation.payer == payer)).all()
        if not holds:
            break
        assert time.monotonic() < deadline, "the abandoned stream still holds its reservation"
        time.sleep(0.1)
