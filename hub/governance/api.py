"""Governance routes of the platform (`/api/governance/...`, behind the hub's auth): what is in force, my votes,
delegate, propose, vote, queue, execute, list proposals; and, on dev chains, an admin's clock advance.

Every write is signed with the caller's own custodial key (hub.governance.actions): no body field names another
user or address to act for (bodies refuse unknown fields), so nobody can vote with someone else's OPEN.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from eth_utils import is_address, to_checksum_address
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from hub.auth import HubUser, admin_user, current_user
from hub.governance import actions, proposals
from hub.governance.actions import ActionRefused, Actor
from hub.governance.parameters import platform_parameters
from hub.governance.periods import current_period
from hub.keys.faucet import FaucetRefusedError, require_dev_chain
from hub.keys.wallets import ensure_wallet
from hub.ledger.governance_contracts import SUPPORT, Governance
from hub.platform.idempotency import idempotent
from hub.platform.ledger_feature import ledger_parts, user_only
from hub.platform.runtime import Feature, PlatformRuntime, get_runtime
from hub.rewards.money import open_to_wei

log = logging.getLogger("hub.governance")
router = APIRouter()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # e.g. {"user": "alice"} is refused, not silently ignored


class DelegateBody(Strict):
    wrap: str = Field(default="0", max_length=40, description="OPEN to wrap into gOPEN first (whole OPEN, decimals ok)")
    to: str | None = Field(default=None, description="the address to delegate my votes to; default my own wallet")
    wait_s: float = Field(default=30, ge=0, le=120)


class ProposeBody(Strict):
    description: str = Field(min_length=1, max_length=proposals.MAX_DESCRIPTION)
    changes: dict[str, str] = Field(default_factory=dict, description="e.g. {'platform_fee': '0.002'}")
    calls: list[str] = Field(default_factory=list, max_length=proposals.MAX_CALLS, description="raw 0x calldata")
    wait_s: float = Field(default=30, ge=0, le=120)


class VoteBody(Strict):
    support: str = Field(pattern="^(for|against|abstain)$")
    reason: str = Field(default="", max_length=1000)
    wait_s: float = Field(default=30, ge=0, le=120)


class StepBody(Strict):
    wait_s: float = Field(default=30, ge=0, le=120)


class AdvanceBody(Strict):
    seconds: int = Field(ge=0, le=90 * 86400)


def _context(runtime: PlatformRuntime, user: HubUser) -> tuple[Governance, Any, Actor]:
    deployment, relay, keys = ledger_parts(runtime)
    governance = deployment.ledger.governance
    if governance is None:
        raise HTTPException(503, "this platform's ledger has no governance contracts yet: restart the platform")
    wallet = ensure_wallet(runtime.engine, user_only(user).name, keys)
    return governance, relay, Actor(wallet.username, wallet.address)


def _from_block(runtime: PlatformRuntime) -> int:
    return runtime.extras["ledger"].governance_block


def _proposal_id(text: str) -> int:
    if not text.isdigit() or len(text) > 78:
        raise HTTPException(400, f"proposal id {text[:80]!r} is not a decimal uint256 (as listed by GET proposals)")
    return int(text)


def _answer(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:  # 500, not 502: a gateway status would make clients retry a write that already happened
        raise HTTPException(500, f"the transaction failed on chain: {failed[0]['error']}")
    return {"status": "confirmed" if all(r["status"] == "confirmed" for r in rows) else "pending", "txs": rows} | extra


def _refusal(err: ActionRefused | proposals.ProposalError) -> HTTPException:
    return HTTPException(getattr(err, "status", 400), str(err))


@router.get("/api/governance")
def governance_info(user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)) -> dict:
    """Contracts, voting rules, the parameters in force now and for the current epoch, and my OPEN / gOPEN / votes."""
    governance, _, actor = _context(runtime, user)
    token, governor = governance.token, governance.governor
    with Session(runtime.engine) as session:
        period = current_period(session)
    return {
        "contracts": governance.addresses,
        "rules": {
            "voting_delay_s": governor.voting_delay(),
            "voting_period_s": governor.voting_period(),
            "timelock_delay_s": governance.timelock.min_delay(),
            "proposal_threshold": str(governor.proposal_threshold()),
            "quorum_now": str(governor.quorum(token.clock() - 1)),
        },
        "clock": token.clock(),
        "parameters": platform_parameters(runtime).as_dict(),
        "epoch_parameters": period.as_dict() if period is not None else None,
        "me": {
            "address": actor.address,
            "open": str(runtime.extras["ledger"].ledger.token.balance_of(actor.address)),
            "gopen": str(token.balance_of(actor.address)),
            "votes": str(token.votes(actor.address)),
            "delegate": token.delegates(actor.address),
        },
    }


@router.post("/api/governance/delegate")
async def delegate(
    body: DelegateBody,
    request: Request,
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> Any:
    """Wrap `wrap` OPEN from my wallet into gOPEN (optional) and delegate my votes (to myself by default)."""
    return await idempotent(request, user, lambda: run_in_threadpool(_delegate, body, user, runtime))


def _delegate(body: DelegateBody, user: HubUser, runtime: PlatformRuntime) -> dict[str, Any]:
    governance, relay, actor = _context(runtime, user)
    try:
        amount = open_to_wei(body.wrap, "wrap")
    except (TypeError, ValueError) as err:
        raise HTTPException(400, f'{err} (OPEN to wrap, e.g. "10")') from None
    if body.to is not None and not is_address(body.to):
        raise HTTPException(400, f"`to` {body.to!r} is not an Ethereum address")
    target = to_checksum_address(body.to) if body.to else actor.address
    open_token = runtime.extras["ledger"].ledger.token
    try:
        actions.require_gas(governance, actor)
        held = open_token.balance_of(actor.address)
        if amount > held:
            raise ActionRefused(409, f"your wallet holds {actions.open_text(held)} OPEN; cannot wrap {body.wrap}")
        calls = []
        if amount:
            approve = open_token.approve(governance.token.address, amount)
            actions.preflight(governance, approve, actor)
            calls += [
                (approve, actions.fresh_ref()),
                (governance.token.deposit_for(actor.address, amount), actions.fresh_ref()),
            ]
        delegation = governance.token.delegate(target)
        actions.preflight(governance, delegation, actor)
        calls.append((delegation, actions.fresh_ref()))
    except ActionRefused as err:
        raise _refusal(err) from None
    # One at a time: each transaction's gas is estimated on the state the previous one leaves (delegating votes that
    # were just wrapped costs more than delegating none).
    rows: list[dict[str, Any]] = []
    for call in calls:
        rows += actions.send_as_user(runtime.engine, relay, actor, [call], "delegate", body.wait_s)
        if rows[-1]["status"] != "confirmed":
            break
    log.info("governance: %s wrapped %s OPEN and delegated to %s", actor.username, body.wrap, target)
    return _answer(rows, delegate=target, votes=str(governance.token.votes(target)))


@router.get("/api/governance/proposals")
def list_proposals(user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)) -> dict:
    """Every proposal, newest first, with its state, tallies (gOPEN base units), deadline, eta and whether I voted."""
    governance, _, actor = _context(runtime, user)
    found = proposals.proposals_on_chain(governance, _from_block(runtime))
    views = [proposals.proposal_view(governance, proposal, actor.address) for proposal in reversed(found)]
    return {"proposals": views, "clock": governance.token.clock()}


@router.post("/api/governance/proposals")
def propose(
    body: ProposeBody, user: HubUser = Depends(current_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """Propose a parameter change (`changes`, or raw ProtocolParameters `calls`), signed by my wallet."""
    governance, relay, actor = _context(runtime, user)
    try:
        calls = proposals.change_calls(governance, body.changes) + proposals.raw_calls(governance, body.calls)
        proposals.check_calls(governance, calls)
        actions.check_can_propose(governance, actor)
        actions.require_gas(governance, actor)
        steps = proposals.as_actions(calls)
        proposal_id = governance.governor.proposal_id(steps, body.description)
        call = governance.governor.propose(steps, body.description)
        actions.preflight(governance, call, actor)
    except (ActionRefused, proposals.ProposalError) as err:
        raise _refusal(err) from None
    rows = actions.send_as_user(runtime.engine, relay, actor, [(call, str(proposal_id))], "propose", body.wait_s)
    log.info("governance: %s proposed %s: %s", actor.username, proposal_id, body.description[:80])
    return _answer(rows, id=str(proposal_id))


def _step(
    runtime: PlatformRuntime,
    user: HubUser,
    proposal_id: str,
    kind: str,
    wait_s: float,
    support: str = "",
    reason: str = "",
) -> dict:
    governance, relay, actor = _context(runtime, user)
    pid = _proposal_id(proposal_id)
    proposal = proposals.find_proposal(governance, _from_block(runtime), pid)
    if proposal is None:
        raise HTTPException(404, f"no proposal {proposal_id} on this platform's governor")
    governor = governance.governor
    try:
        if kind == "vote":
            actions.check_can_vote(governance, pid, actor)
            call, ref = governor.cast_vote(pid, SUPPORT[support], reason), f"{pid}:{actor.username}"
        elif kind == "queue":
            actions.check_can_queue(governance, pid)
            call, ref = governor.queue(proposal.actions, proposal.description), str(pid)
        else:
            actions.check_can_execute(governance, pid)
            call, ref = governor.execute(proposal.actions, proposal.description), str(pid)
        actions.require_gas(governance, actor)
        actions.preflight(governance, call, actor)
    except ActionRefused as err:
        raise _refusal(err) from None
    rows = actions.send_as_user(runtime.engine, relay, actor, [(call, ref)], kind, wait_s)
    log.info("governance: %s %s proposal %s %s", actor.username, kind, pid, support)
    return _answer(rows, proposal=proposals.proposal_view(governance, proposal, actor.address))


@router.post("/api/governance/proposals/{proposal_id}/vote")
def vote(
    proposal_id: str,
    body: VoteBody,
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    """Vote for / against / abstain with the votes delegated to my own wallet at the proposal's snapshot."""
    return _step(runtime, user, proposal_id, "vote", body.wait_s, body.support, body.reason)


@router.post("/api/governance/proposals/{proposal_id}/queue")
def queue(
    proposal_id: str,
    body: StepBody,
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    """Queue a succeeded proposal in the timelock (anyone may)."""
    return _step(runtime, user, proposal_id, "queue", body.wait_s)


@router.post("/api/governance/proposals/{proposal_id}/execute")
def execute(
    proposal_id: str,
    body: StepBody,
    user: HubUser = Depends(current_user),
    runtime: PlatformRuntime = Depends(get_runtime),
) -> dict:
    """Execute a queued proposal once the timelock delay has passed (anyone may)."""
    return _step(runtime, user, proposal_id, "execute", body.wait_s)


@router.post("/api/admin/governance/advance")
async def advance_clock(
    body: AdvanceBody, admin: HubUser = Depends(admin_user), runtime: PlatformRuntime = Depends(get_runtime)
) -> dict:
    """Dev chains only: move the chain's clock forward and mine a block (a class vote need not wait in real time)."""
    deployment, _, _ = ledger_parts(runtime)
    w3 = deployment.ledger.w3
    try:
        await asyncio.to_thread(require_dev_chain, w3)
    except FaucetRefusedError as err:
        raise HTTPException(409, str(err).replace("the faucet only runs", "advancing the clock only works")) from None

    def advance() -> int:
        if body.seconds:
            w3.provider.make_request("evm_increaseTime", [body.seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        return int(w3.eth.get_block("latest")["timestamp"])

    clock = await asyncio.to_thread(advance)
    log.info("governance: admin %s advanced the dev chain's clock by %d s", admin.name, body.seconds)
    return {"clock": clock}


feature = Feature(name="governance", router=router)
