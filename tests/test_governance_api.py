"""Governance through the real hub (platform API + SDK, anvil, the relay signing with custodial keys): delegate,
propose, vote, queue, execute; every bad input refused with a clear error and nothing changed; and the abuse case:
a student cannot vote with anyone else's OPEN.

The chain's clock is moved with the admin's dev-chain endpoint (POST /api/admin/governance/advance).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import httpx
import pytest

import openledger_sdk
from openledger_sdk.governance import Proposal
from tests.hub_harness import RunningHub
from tests.test_dashboards import wait_for_ledger

pytestmark = pytest.mark.e2e

API = "/services/platform/api"


def advance(platform: RunningHub, seconds: int) -> None:
    with platform.admin() as admin:
        answer = admin.post(f"{API}/admin/governance/advance", json={"seconds": seconds})
    assert answer.status_code == 200, answer.text


def refused(client: httpx.Client, path: str, body: dict, status: int, words: str) -> None:
    answer = client.post(f"{API}/{path}", json=body)
    assert answer.status_code == status, answer.text
    assert words in str(answer.json()["detail"]), answer.text


def test_a_vote_from_proposal_to_execution_with_every_refusal(platform: RunningHub) -> None:
    run = uuid.uuid4().hex[:6]
    names = {role: f"gv{run}-{role}" for role in ("alice", "bob", "carol")}
    tokens = {role: platform.ensure_user(name) for role, name in names.items()}
    wait_for_ledger(platform, tokens["alice"])
    for role in ("alice", "carol"):
        platform.fund(names[role], "100")
    platform.fund(names["bob"], "0")  # gas only: bob has no OPEN, so no votes
    sdk = {role: openledger_sdk.connect(platform.url, token) for role, token in tokens.items()}
    alice, bob, carol = (platform.as_token(tokens[role]) for role in ("alice", "bob", "carol"))
    rules = sdk["alice"].governance.info()["rules"]
    fee_before = sdk["alice"].governance.parameters()["platform_fee"]

    delegated = sdk["alice"].governance.delegate(wrap="50")
    assert delegated["status"] == "confirmed" and delegated["votes"] == str(50 * 10**18), delegated
    me = sdk["alice"].governance.info()["me"]
    assert (me["gopen"], me["open"]) == (str(50 * 10**18), str(50 * 10**18))
    refused(bob, "governance/delegate", {"wrap": "5"}, 409, "holds 0 OPEN")
    refused(bob, "governance/delegate", {"wrap": "-1"}, 400, "must not be negative")
    advance(platform, 1)

    count = len(sdk["alice"].governance.proposals())
    good = {"description": f"fee {run}", "changes": {"platform_fee": "0.002"}}
    # Bad proposals: clear errors, and no proposal appears.
    refused(bob, "governance/proposals", good, 403, "proposing needs 1 gOPEN")
    refused(
        alice, "governance/proposals", {"description": "x", "calls": ["0x1234"]}, 400, "not ProtocolParameters calldata"
    )
    refused(alice, "governance/proposals", {"description": "x", "calls": ["nonsense"]}, 400, "calls[0]")
    split = {"owner_percent": "50", "contributors_percent": "40", "protocol_percent": "5"}
    refused(alice, "governance/proposals", {"description": "x", "changes": split}, 400, "must be exactly 100, not 95")
    refused(alice, "governance/proposals", {"description": "x", "changes": {"owner_percent": "60"}}, 400, "together")
    refused(alice, "governance/proposals", {"description": "x", "changes": {"contributor_cap_percent": "101"}}, 400,
            "between 0 and 100")  # fmt: skip
    refused(alice, "governance/proposals", {"description": "x", "changes": {"platform_fee": "-1"}}, 400,
            "must not be negative")  # fmt: skip
    refused(alice, "governance/proposals", {"description": "x", "changes": {"gas": "1"}}, 400, "unknown parameter")
    refused(alice, "governance/proposals", {"description": "x"}, 400, "nothing to change")
    assert len(sdk["alice"].governance.proposals()) == count

    proposal = sdk["alice"].governance.propose(f"fee {run}", platform_fee="0.002")
    assert proposal.state in ("pending", "active") and proposal.actions == [
        "setPlatformFee(platformFee_=2000000000000000 (0.002 OPEN))"
    ]
    advance(platform, rules["voting_delay_s"] + 1)
    carol_late = sdk["carol"].governance.delegate(wrap="100")  # after voting opened: no votes on this proposal
    assert carol_late["status"] == "confirmed"

    vote_path = f"governance/proposals/{proposal.id}/vote"
    # The abuse cases: bob has no votes of his own, and cannot borrow alice's by naming her.
    refused(bob, vote_path, {"support": "for"}, 403, "no votes")
    answer = bob.post(f"{API}/{vote_path}", json={"support": "for", "user": names["alice"]})
    assert answer.status_code == 422 and "extra" in answer.text.lower(), answer.text
    refused(carol, vote_path, {"support": "against"}, 403, "no votes")
    refused(alice, vote_path, {"support": "maybe"}, 422, "")
    refused(alice, "governance/proposals/12x/vote", {"support": "for"}, 400, "not a decimal")
    refused(alice, "governance/proposals/123/vote", {"support": "for"}, 404, "no proposal 123")
    voted = sdk["alice"].governance.vote(proposal, "for")
    assert voted.votes_for == 50 and voted.votes_against == 0 and voted.voted is True
    refused(alice, vote_path, {"support": "against"}, 409, "already voted")
    refused(alice, f"governance/proposals/{proposal.id}/queue", {}, 409, "only a succeeded proposal")
    assert sdk["alice"].governance.get(proposal).votes_for == 50  # nothing changed by the refusals

    advance(platform, rules["voting_period_s"] + 1)
    refused(alice, vote_path, {"support": "for"}, 409, "is closed")
    queued = sdk["bob"].governance.queue(proposal)  # anyone may queue
    assert queued.state == "queued" and queued.eta
    refused(bob, f"governance/proposals/{proposal.id}/execute", {}, 409, "the timelock holds")
    assert sdk["alice"].governance.parameters()["platform_fee"] == fee_before

    advance(platform, rules["timelock_delay_s"] + 1)
    executed = sdk["bob"].governance.execute(proposal)
    assert executed.state == "executed"
    assert sdk["alice"].governance.parameters()["platform_fee"] == str(2 * 10**15)
    refused(bob, f"governance/proposals/{proposal.id}/execute", {}, 409, "is executed")
    listed = {p.id: p for p in sdk["carol"].governance.proposals()}
    assert isinstance(listed[proposal.id], Proposal) and listed[proposal.id].voted is False

    # Put the fee back, so the rest of the suite on this shared hub sees the genesis fee again.
    restore = sdk["alice"].governance.propose(f"restore {run}", platform_fee=str(Decimal(fee_before) / 10**18))
    advance(platform, rules["voting_delay_s"] + 1)
    sdk["alice"].governance.vote(restore, "for")
    advance(platform, rules["voting_period_s"] + 1)
    sdk["alice"].governance.queue(restore)
    advance(platform, rules["timelock_delay_s"] + 1)
    assert sdk["alice"].governance.execute(restore).state == "executed"
    assert sdk["alice"].governance.parameters()["platform_fee"] == fee_before
    for client in (alice, bob, carol):
        client.close()


def test_only_admins_move_the_clock(platform: RunningHub) -> None:
    token = platform.ensure_user(f"gv{uuid.uuid4().hex[:6]}-eve")
    with platform.as_token(token) as client:
        assert client.post(f"{API}/admin/governance/advance", json={"seconds": 999}).status_code == 403
