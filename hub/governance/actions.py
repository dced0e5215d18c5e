"""A hub user's governance actions, signed with their custodial key through the relay: wrap OPEN and delegate,
propose, vote, queue, execute. Each is checked first (state, deadline, timelock, votes, a simulated call from the
user's own address) so a refusal says why and nothing is sent; only then is it enqueued and awaited.

There is no way to act for someone else: every write is signed by the caller's own wallet (`user_signer(name)`),
so a student can vote only with the votes delegated to their own address.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from hub.db import session_scope
from hub.ledger.errors import ContractRevert
from hub.ledger.governance_contracts import Governance, ProposalState
from hub.ledger.tx import PreparedCall, simulate
from hub.relay.outbox import OutboxEntry, OutboxStatus, enqueue, user_signer
from hub.rewards.money import wei_to_open

POLL_S = 0.05


class ActionRefused(Exception):  # noqa: N818 - a refusal, not a crash: the API maps it to its status code
    """The action cannot happen now; `status` is the HTTP status to answer with, nothing was sent."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Actor:
    username: str
    address: str


def open_text(wei: int) -> str:
    return format(wei_to_open(wei).normalize(), "f")


def require_gas(governance: Governance, actor: Actor) -> None:
    if governance.token.w3.eth.get_balance(actor.address) == 0:
        raise ActionRefused(
            409,
            f"your wallet {actor.address} has no gas (ETH) to send transactions: ask your "
            "instructor or admin to fund it (POST /api/admin/faucet)",
        )


def preflight(governance: Governance, call: PreparedCall, actor: Actor, status: int = 409) -> None:
    """The call as the user's wallet would send it, simulated: a revert is a refusal with the decoded reason."""
    try:
        simulate(governance.token.w3, call, actor.address, block="pending")  # as a transaction sent now
    except ContractRevert as err:
        raise ActionRefused(status, f"{call.contract}.{call.function} would revert: {err}") from None


def check_can_propose(governance: Governance, actor: Actor) -> None:
    threshold = governance.governor.proposal_threshold()
    votes = governance.token.past_votes(actor.address, governance.token.clock() - 1)
    if votes < threshold <= governance.token.votes(actor.address):
        raise ActionRefused(
            409,
            "your votes were delegated this very second, and a proposer's votes count from the "
            "second before the proposal: try again in a moment",
        )
    if votes < threshold:
        raise ActionRefused(
            403,
            f"proposing needs {open_text(threshold)} gOPEN of votes delegated to you; you have "
            f"{open_text(votes)}: wrap OPEN and delegate first (ol.governance.delegate)",
        )


def check_can_vote(governance: Governance, proposal_id: int, actor: Actor) -> None:
    governor, now = governance.governor, governance.token.clock()
    state = governor.state(proposal_id)
    if state == ProposalState.PENDING:
        opens = governor.snapshot(proposal_id)
        raise ActionRefused(409, f"voting on proposal {proposal_id} opens at {opens} (in {opens - now} s)")
    if state != ProposalState.ACTIVE:
        deadline = governor.deadline(proposal_id)
        raise ActionRefused(
            409,
            f"voting on proposal {proposal_id} is closed: its deadline {deadline} has passed (now {now}); "
            f"the proposal is {state.name.lower()}",
        )
    if governor.has_voted(proposal_id, actor.address):
        raise ActionRefused(409, f"you already voted on proposal {proposal_id}; a vote cannot be cast twice or changed")
    votes = governance.token.past_votes(actor.address, governor.snapshot(proposal_id))
    if votes == 0:
        raise ActionRefused(
            403,
            f"you had no votes when voting on proposal {proposal_id} opened (its snapshot): votes count "
            "only for gOPEN wrapped and delegated before voting opens; nothing was sent",
        )


def check_can_queue(governance: Governance, proposal_id: int) -> None:
    state = governance.governor.state(proposal_id)
    if state != ProposalState.SUCCEEDED:
        detail = (
            f" (voting ends at {governance.governor.deadline(proposal_id)})" if state == ProposalState.ACTIVE else ""
        )
        raise ActionRefused(
            409, f"proposal {proposal_id} is {state.name.lower()}{detail}: only a succeeded proposal can be queued"
        )


def check_can_execute(governance: Governance, proposal_id: int) -> None:
    governor, now = governance.governor, governance.token.clock()
    state = governor.state(proposal_id)
    if state != ProposalState.QUEUED:
        raise ActionRefused(
            409,
            f"proposal {proposal_id} is {state.name.lower()}: only a queued proposal can be "
            "executed (queue it once it succeeded)",
        )
    eta = governor.eta(proposal_id)
    if now < eta:
        raise ActionRefused(
            409, f"the timelock holds proposal {proposal_id} until {eta} ({eta - now} s from now): execute it then"
        )


def send_as_user(
    engine: Any, relay: Any, actor: Actor, calls: list[tuple[PreparedCall, str]], kind: str, wait_s: float
) -> list[dict[str, Any]]:
    """Enqueue `calls` (each with its business ref) signed by the actor's custodial key, in order, in one
    transaction; wait up to `wait_s` for them; each row's status."""
    with session_scope(engine) as session:
        entries = [
            enqueue(session, call, signer=user_signer(actor.username), kind=f"governance.{kind}", ref=ref)
            for call, ref in calls
        ]
        session.flush()
        ids = [entry.id for entry in entries]
    relay.wake()
    deadline = time.monotonic() + wait_s
    while True:
        with Session(engine) as session:
            rows = [session.get(OutboxEntry, i) for i in ids]
            views = [_row_view(row) for row in rows]
        done = all(view["status"] in (OutboxStatus.CONFIRMED, OutboxStatus.FAILED) for view in views)
        if done or time.monotonic() > deadline:
            return views
        time.sleep(POLL_S)


def _row_view(row: OutboxEntry | None) -> dict[str, Any]:
    if row is None:
        return {"status": "unknown"}
    return {"function": row.function, "status": row.status, "tx_hash": row.tx_hash, "error": row.last_error}


def fresh_ref() -> str:
    return uuid.uuid4().hex
