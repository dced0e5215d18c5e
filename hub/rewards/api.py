"""Rewards routes under `/services/platform`, and the platform `Feature` that runs settlement in the background.

GET  /api/rewards/pending              my claimable OPEN (or ?address=), with what each epoch credited
GET  /api/rewards/proof                the Merkle proof(s) for my address(es) at the distributor's current root
POST /api/rewards/claim                the platform claims for me (or for {"address"}: anyone may claim for any)
GET  /api/rewards/epochs[/{n}]         settled epochs: totals, roots (admins also see the charges)
POST /api/admin/settle                 admins: close and settle an epoch now
GET  /api/attribution/{request_id}     one inference record: fee split, shares, top examples, inclusion proof
GET  /api/rewards/records              the inference records I paid for (paged: ?limit=&offset=), newest first
GET  /api/models/{name}/records        the records of my model (owner and admins; paged)
GET  /api/models/{name}/revenue        requests, fees and the owner's share per day, the split, top contributors
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from hub.auth import HubUser, admin_user, current_user
from hub.db import session_scope
from hub.input_rules import SqlId
from hub.ledger.contracts import Ledger
from hub.models.models import PublishedModel
from hub.platform.idempotency import idempotent
from hub.platform.ledger_feature import ledger_parts
from hub.platform.progress import PROGRESS_PROVIDERS
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime, stop_task
from hub.relay.outbox import UNFINISHED, OutboxEntry, OutboxStatus
from hub.rewards.claims import claim_state, enqueue_claim, pending_view, user_accounts
from hub.rewards.models import InferenceRecordRow, RewardEpoch
from hub.rewards.reports import epoch_report, inference_counts, model_revenue, record_view, records_page
from hub.rewards.settlement import NotReadyError, Settler

log = logging.getLogger("hub.rewards")
router = APIRouter(tags=["rewards"])

BUSY_TICK_S = 0.5  # background settlement pass while an epoch is in progress
IDLE_TICK_S = 2.0  # otherwise: only "is an epoch due?"


def _ledger(runtime: PlatformRuntime) -> Ledger:
    return ledger_parts(runtime)[0].ledger  # 503 with the reason while the chain is starting


def _accounts(session: Session, user: HubUser, address: str | None) -> list[str]:
    if address is not None:
        if not is_address(address):
            raise HTTPException(400, f"{address!r} is not an Ethereum address")
        return [to_checksum_address(address)]
    if user.kind != "user":
        raise HTTPException(400, f"{user.name!r} is a {user.kind}: name an `address`")
    accounts = user_accounts(session, user.name)
    if not accounts:
        raise HTTPException(404, f"{user.name} has no wallet yet (GET /api/wallet makes one), so no rewards")
    return accounts


@router.get("/api/rewards/pending")
def pending(
    address: str | None = None, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """Claimable OPEN (base units, as strings) per account, and the per-epoch credits behind it."""
    ledger = _ledger(runtime)
    with Session(runtime.engine) as session:
        return pending_view(session, ledger, _accounts(session, user, address))


@router.get("/api/rewards/proof")
def proof(
    address: str | None = None, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> list[dict]:
    """Per account: cumulative amount, root, epoch and Merkle proof — what RewardDistributor.claim takes."""
    ledger = _ledger(runtime)
    with Session(runtime.engine) as session:
        return [claim_state(session, ledger, account).view() for account in _accounts(session, user, address)]


class ClaimBody(BaseModel):
    address: str | None = Field(default=None, description="claim for this address (default: all of mine)")
    wait_s: float = Field(default=30, ge=0, le=120, description="how long to wait for the claims to be mined")


@router.post("/api/rewards/claim")
async def claim(
    request: Request,
    body: ClaimBody | None = None,
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> JSONResponse:
    """Submit my claims through the relay (the operator pays the gas); 200 when mined, 202 while still pending.
    With an `Idempotency-Key`, a retry returns the first answer."""
    return await idempotent(request, user, lambda: _claim(body or ClaimBody(), user, runtime))


async def _claim(body: ClaimBody, user: HubUser, runtime: PlatformRuntime) -> JSONResponse:
    ledger = _ledger(runtime)

    def submit() -> list[dict[str, Any]]:
        submitted = []
        with session_scope(runtime.engine) as session:
            for account in _accounts(session, user, body.address):
                state = claim_state(session, ledger, account)
                entry = enqueue_claim(session, ledger, state) if state.claimable else None
                submitted.append({"address": account, "amount": str(state.claimable), "outbox_id": entry and entry.id})
        return submitted

    claims = await run_in_threadpool(submit)
    if any(item["outbox_id"] for item in claims):
        runtime.extras["relay"].wake()
    claims = await _wait_for_outbox(runtime, claims, body.wait_s)
    failed = [item for item in claims if item["status"] == OutboxStatus.FAILED]
    if failed:
        return JSONResponse({"claims": claims, "detail": f"claim failed: {failed[0]['error']}"}, status_code=502)
    done = all(item["status"] in (OutboxStatus.CONFIRMED, "nothing to claim") for item in claims)
    paid = sum(int(item["amount"]) for item in claims if item["status"] == OutboxStatus.CONFIRMED)
    return JSONResponse({"claims": claims, "paid": str(paid)}, status_code=200 if done else 202)


async def _wait_for_outbox(runtime: PlatformRuntime, items: list[dict[str, Any]], wait_s: float) -> list[dict]:
    """Poll the outbox rows named in `items` until none is unfinished or `wait_s` is over; add their status."""
    deadline = time.monotonic() + wait_s
    while True:
        with Session(runtime.engine) as session:
            for item in items:
                entry = session.get(OutboxEntry, item["outbox_id"]) if item["outbox_id"] else None
                item["status"] = entry.status if entry else "nothing to claim"
                item["tx_hash"], item["error"] = (entry.tx_hash, entry.last_error) if entry else (None, None)
        if time.monotonic() > deadline or not any(item["status"] in UNFINISHED for item in items):
            return items
        await asyncio.sleep(0.05)


@router.get("/api/rewards/epochs")
def epochs(
    limit: int = Query(20, ge=1, le=500),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> list[dict]:
    """The latest epochs, newest first."""
    with Session(runtime.engine) as session:
        rows = session.exec(select(RewardEpoch).order_by(RewardEpoch.number.desc()).limit(limit))  # type: ignore[attr-defined]
        return [epoch_report(session, epoch, admin=user.admin) for epoch in rows]


@router.get("/api/rewards/epochs/{number}")
def epoch(
    number: SqlId, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    with Session(runtime.engine) as session:
        found = session.get(RewardEpoch, number)
        if found is None:
            raise HTTPException(404, f"no epoch {number}")
        return epoch_report(session, found, admin=user.admin)


class SettleBody(BaseModel):
    wait_s: float = Field(default=30, ge=0, le=300, description="how long to wait for the epoch to settle")


@router.post("/api/admin/settle")
async def settle(
    body: SettleBody | None = None,
    admin: HubUser = Depends(admin_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> JSONResponse:
    """Close an epoch now (or continue / retry the one in progress) and wait for it; 202 while it is not done."""
    settler: Settler = runtime.extras["rewards"]
    try:
        report = await asyncio.to_thread(settler.settle_now, (body or SettleBody()).wait_s)
    except NotReadyError as err:
        raise HTTPException(503, str(err)) from None
    except Exception as err:  # noqa: BLE001 - e.g. the chain stopped answering mid-step: the next pass resumes
        log.warning("settle by %s failed", admin.name, exc_info=True)
        raise HTTPException(
            502,
            f"a settlement step failed ({type(err).__name__}: {err}); it resumes where it stopped "
            "at the next try or background pass",
        ) from None
    log.info("settle by %s: epoch %s %s", admin.name, report.get("epoch"), report["status"])
    done = report["status"] in ("settled", "empty", "nothing to settle")
    return JSONResponse(report, status_code=200 if done else 502 if report["status"] == "failed" else 202)


@router.get("/api/attribution/{request_id}")
def attribution(
    request_id: str, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """One inference record; any hub user may read it (its leaf is public once committed), the payer's name only
    the payer and admins."""
    deployment = runtime.extras.get("ledger")
    with Session(runtime.engine) as session:
        row = session.exec(select(InferenceRecordRow).where(InferenceRecordRow.request_id == request_id)).first()
        if row is None:
            raise HTTPException(404, f"no inference record for request {request_id!r}")
        ledger = deployment.ledger if deployment is not None else None
        return record_view(session, row, ledger, show_payer=user.can_act_for(row.payer))


@router.get("/api/rewards/records")
def my_records(
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10**9),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    """Every inference record I paid for, newest first: what each request cost and whether it is settled."""
    with Session(runtime.engine) as session:
        return records_page(session, InferenceRecordRow.payer == user.name, limit, offset, show_payer=True)


def _require_owner(session: Session, user: HubUser, name: str, what: str) -> None:
    published = session.exec(select(PublishedModel).where(PublishedModel.name == name)).first()
    # The owner's business: the owner and admins only (no owner known: admins only).
    if not (user.admin or (published is not None and user.kind == "user" and published.owner == user.name)):
        raise HTTPException(403, f"only the owner of model {name!r} and admins may read its {what}")


@router.get("/api/models/{name}/records")
def model_records(
    name: str,
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=10**9),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    """The inference records of a model, newest first (payer names for admins only)."""
    with Session(runtime.engine) as session:
        _require_owner(session, user, name, "records")
        return records_page(session, InferenceRecordRow.model == name, limit, offset, show_payer=user.admin)


@router.get("/api/models/{name}/revenue")
def revenue(
    name: str,
    days: int = Query(30, ge=1, le=366),
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    with Session(runtime.engine) as session:
        _require_owner(session, user, name, "revenue")
        return model_revenue(session, name, days)


# Start and stop --------------------------------------------------------------------------------------------------
async def _settle_in_background(settler: Settler) -> None:
    last_error = ""
    while True:
        try:
            await asyncio.to_thread(settler.tick)
            last_error = ""
        except Exception as err:  # noqa: BLE001 - a failed pass (e.g. the chain briefly down) is retried
            if str(err) != last_error:  # once per distinct problem, not every pass
                log.warning("rewards: settlement pass failed; retrying", exc_info=True)
            last_error = str(err)
        busy = await asyncio.to_thread(settler.busy)
        await asyncio.sleep(BUSY_TICK_S if busy else IDLE_TICK_S)


async def startup(runtime: PlatformRuntime) -> None:
    settler = runtime.extras["rewards"] = Settler(runtime, runtime.settings.rewards)
    runtime.extras["rewards_task"] = asyncio.create_task(_settle_in_background(settler), name="rewards-settlement")


async def shutdown(runtime: PlatformRuntime) -> None:
    await stop_task(runtime, "rewards_task")


PROGRESS_PROVIDERS.append(inference_counts)
feature = Feature(name="rewards", router=router, startup=startup, shutdown=shutdown)
