"""Training holds share the per-payer lock and the spendable sum with inference fee reservations, on SQLite and on
PostgreSQL: concurrent runs cannot spend the same OPEN twice, and each kind of hold limits the other.

Real databases and the real `TrainingCharges` / `Reservations`; the wallet's chain balance is given as a number
(reservations read it before taking the lock; the chain itself is exercised in test_training_fees_e2e.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.db import make_engine, migrate
from hub.rewards.reservations import NotEnoughFundsError, Reservations
from hub.rewards.training_charges import ChargeError, PayerWallet, TrainingCharges
from hub.rewards.training_models import TrainingRun, TrainingStatus
from hub.rewards.training_plan import PlannedRun
from tests.postgres import postgres_bin, temporary_postgres

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(postgres_bin() is None, reason="no pg"))]
PRICE = 10**13
PLAN = PlannedRun("tiny-base", "facts", 1, "0x" + "11" * 32, "ab" * 32, "cd" * 32, [100, 100, 100])  # 300 tokens
COST = 300 * PRICE


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if request.param == "sqlite":
        sql = make_engine(f"sqlite:///{tmp_path_factory.mktemp('training') / 'platform.sqlite'}")
        migrate(sql)
        yield sql
        sql.dispose()
    else:
        with temporary_postgres() as url:
            sql = make_engine(url)
            migrate(sql)
            yield sql
            sql.dispose()


def wallet(balance: int, user: str = "carol") -> PayerWallet:
    return PayerWallet(user, "0x" + "22" * 20, balance, gas=10**18, gas_needed=10**15)


def try_reserve(charges: TrainingCharges, balance: int) -> bool:
    run_id = uuid.uuid4().hex
    try:
        charges.reserve(run_id, run_id, PLAN, PRICE, wallet(balance))
    except ChargeError as err:
        assert err.status == 402 and "not enough OPEN to train" in err.detail
        return False
    return True


def test_twenty_runs_at_once_from_a_wallet_that_covers_three(engine: Engine) -> None:
    charges = TrainingCharges(engine, ttl_s=3600)
    with ThreadPoolExecutor(max_workers=10) as pool:
        granted = list(pool.map(lambda _: try_reserve(charges, 3 * COST + COST // 2), range(20)))
    assert sum(granted) == 3
    with Session(engine) as session:
        held = session.exec(select(TrainingRun).where(TrainingRun.status == TrainingStatus.RESERVED)).all()
        assert len(held) == 3 and all(run.reserved == COST for run in held)


def test_training_holds_and_inference_holds_limit_each_other(engine: Engine) -> None:
    charges, inference = TrainingCharges(engine, ttl_s=3600), Reservations(engine)
    balance = COST + 5
    inference.reserve("carol", "req-1", 10, balance)  # a chat request holds 10 units
    assert not try_reserve(charges, balance)  # the run no longer fits beside it
    inference.release("req-1")
    assert try_reserve(charges, balance)
    with pytest.raises(NotEnoughFundsError):
        inference.reserve("carol", "req-2", 10, balance)  # and now the run's hold leaves 5 units for chats


def test_a_negative_price_or_token_count_holds_nothing(engine: Engine) -> None:
    # Below the API's validation (a price setting >= 0, the platform's own counts): refused, nothing written.
    charges = TrainingCharges(engine, ttl_s=3600)
    with pytest.raises(ValueError, match="never negative"):
        charges.reserve(uuid.uuid4().hex, "x", PLAN, -PRICE, wallet(10**30))
    negative = PlannedRun(*PLAN.__dict__.values())
    object.__setattr__(negative, "step_tokens", [100, -400])
    with pytest.raises(ValueError, match="never negative"):
        charges.reserve(uuid.uuid4().hex, "y", negative, PRICE, wallet(10**30))
    with Session(engine) as session:
        assert session.exec(select(TrainingRun)).all() == []
