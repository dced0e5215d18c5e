"""Paid fine-tuning routes under `/services/platform`, and the background pass that expires and confirms charges.

POST /api/training/quote                 what a run would train and cost (nothing is held)
POST /api/training/runs                  reserve a run's maximum cost from my custodial wallet (402 when it cannot)
POST /api/training/runs/{run_id}/finish  charge it as it ended: complete, stopped or failed after `steps` steps
GET  /api/training/runs[/{run_id}]       my runs (admins: anyone's one run) with their reservation and charge
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlmodel import Session, col, select

from hub.auth import HubUser, current_user
from hub.keys.wallets import ensure_wallet
from hub.ledger.tx import suggest_fees
from hub.platform.ledger_feature import ledger_parts, user_only
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime, stop_task
from hub.rewards.money import wei_to_open
from hub.rewards.settlement import CHARGE_GAS
from hub.rewards.training_charges import ChargeError, EndReport, PayerWallet, TrainingCharges, run_view
from hub.rewards.training_models import TrainingRun, TrainingStatus
from hub.rewards.training_plan import PlanError, RunRequest, plan_run
from hub.rewards.training_price import training_price_per_token

log = logging.getLogger("hub.rewards.training")
router = APIRouter(tags=["training"])
SWEEP_S = 5.0  # how often expired holds are charged and finished transfers confirmed


def _charges(runtime: PlatformRuntime) -> TrainingCharges:
    return runtime.extras["training"]


def _plan(runtime: PlatformRuntime, user: HubUser, body: RunRequest) -> Any:
    try:
        return plan_run(runtime, user, body)
    except PlanError as err:
        raise HTTPException(err.status, err.detail) from None


def _wallet(runtime: PlatformRuntime, username: str) -> PayerWallet:
    deployment, _, keys = ledger_parts(runtime)
    wallet = ensure_wallet(runtime.engine, username, keys)
    ledger = deployment.ledger
    try:
        balance, gas = ledger.token.balance_of(wallet.address), ledger.w3.eth.get_balance(wallet.address)
        gas_needed = CHARGE_GAS * suggest_fees(ledger.w3).max_per_gas
    except Exception as err:  # noqa: BLE001 - the chain may be down: nothing is held, the user may retry
        why = f"cannot read wallet {wallet.address} on the chain now ({type(err).__name__}); nothing was held"
        raise HTTPException(503, why) from None
    return PayerWallet(username, wallet.address, balance, gas, gas_needed)


def _treasury(runtime: PlatformRuntime) -> tuple[Any, str]:
    deployment = ledger_parts(runtime)[0]
    return deployment.ledger, runtime.settings.rewards.treasury or deployment.operator


@router.post("/api/training/quote")
def quote(body: RunRequest, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)):
    """The platform's own count of the run's tokens, and its cost at the price in force."""
    planned = _plan(runtime, user, body)
    price = training_price_per_token(runtime)
    cost = planned.tokens * price
    return {
        "steps": len(planned.step_tokens),
        "tokens": planned.tokens,
        "price_per_token_wei": str(price),
        "cost_wei": str(cost),
        "cost": format(wei_to_open(cost).normalize(), "f") if cost else "0",
        "rows_sha256": planned.rows_sha256,
        "config_hash": planned.config_hash,
    }


@router.post("/api/training/runs")
def reserve(
    body: RunRequest, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> JSONResponse:
    """Hold the run's maximum cost (201; 200 for a retry of the same request) or say why not (402)."""
    user_only(user)
    if body.run_id is None:
        raise HTTPException(400, "give the run a `run_id` (32 hex digits): a retry with it finds the same reservation")
    planned = _plan(runtime, user, body)
    wallet = _wallet(runtime, user.name)
    try:
        run, created = _charges(runtime).reserve(
            body.run_id, body.digest(), planned, training_price_per_token(runtime), wallet
        )
    except ChargeError as err:
        raise HTTPException(err.status, err.detail) from None
    if created:
        log.info("training run %s of %s: %d tokens, %d held", run.run_id, user.name, run.planned_tokens, run.reserved)
    return JSONResponse(_view(runtime, run.run_id), status_code=201 if created else 200)


@router.post("/api/training/runs/{run_id}/finish")
async def finish(
    run_id: str,
    body: EndReport,
    wait_s: float = Query(20, ge=0, le=120),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> JSONResponse:
    """Charge the run (its transfer goes through the relay); 200 once paid (or free), 202 while the transfer is
    on its way. Reporting the same end again returns the same charge."""
    ledger, treasury = _treasury(runtime)
    charges = _charges(runtime)
    try:
        await run_in_threadpool(charges.finish, user_only(user).name, run_id, body, ledger, treasury)
    except ChargeError as err:
        raise HTTPException(err.status, err.detail) from None
    runtime.extras["relay"].wake()
    deadline = time.monotonic() + wait_s
    while True:
        await run_in_threadpool(charges.sync)
        view = await run_in_threadpool(_view, runtime, run_id)
        pending = view["status"] == TrainingStatus.CHARGING  # `sync` ran first: still charging = not final yet
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    return JSONResponse(view, status_code=202 if pending else 200)


def _view(runtime: PlatformRuntime, run_id: str) -> dict[str, Any]:
    with Session(runtime.engine) as session:
        return run_view(session, session.get(TrainingRun, run_id))


@router.get("/api/training/runs/{run_id}")
def one_run(run_id: str, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)):
    _charges(runtime).sync()
    with Session(runtime.engine) as session:
        run = session.get(TrainingRun, run_id)
        if run is None or not user.can_act_for(run.payer):
            raise HTTPException(404, f"you have no training run {run_id[:64]!r}")
        return run_view(session, run)


@router.get("/api/training/runs")
def my_runs(
    limit: int = Query(50, ge=1, le=500),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> list[dict]:
    _charges(runtime).sync()
    with Session(runtime.engine) as session:
        runs = session.exec(
            select(TrainingRun)
            .where(TrainingRun.payer == user.name)
            .order_by(col(TrainingRun.created_at).desc())
            .limit(limit)
        ).all()
        return [run_view(session, run) for run in runs]


# Start and stop --------------------------------------------------------------------------------------------------
def sweep(runtime: PlatformRuntime) -> None:
    """Charge the runs whose hold expired without an end report, and confirm finished transfers."""
    charges = _charges(runtime)
    if runtime.extras.get("ledger") is not None:
        ledger, treasury = _treasury(runtime)
        if charges.expire(ledger, treasury):
            runtime.extras["relay"].wake()
    charges.sync()


async def _sweep_in_background(runtime: PlatformRuntime) -> None:
    last_error = ""
    while True:
        try:
            await asyncio.to_thread(sweep, runtime)
            last_error = ""
        except Exception as err:  # noqa: BLE001 - e.g. the database briefly locked: the next pass retries
            if str(err) != last_error:
                log.warning("training charges: sweep failed; retrying", exc_info=True)
            last_error = str(err)
        await asyncio.sleep(SWEEP_S)


async def startup(runtime: PlatformRuntime) -> None:
    runtime.extras["training"] = TrainingCharges(runtime.engine, runtime.settings.rewards.training_reservation_seconds)
    runtime.extras["training_task"] = asyncio.create_task(_sweep_in_background(runtime), name="training-charges")


async def shutdown(runtime: PlatformRuntime) -> None:
    await stop_task(runtime, "training_task")


feature = Feature(name="training", router=router, startup=startup, shutdown=shutdown)
