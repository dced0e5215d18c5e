"""The dashboard's proposals panel on canned platform answers (the browser test is in test_governance_e2e.py):
parameters shown as percent and OPEN, proposals escaped, voting only on an open proposal, refusals as messages."""

from __future__ import annotations

from typing import Any

from extensions.dashboards_lib.governance_panel import ProposalsPanel
from openledger_sdk import OpenLedgerError
from openledger_sdk.governance import Proposal

PARAMETERS = {
    "owner_bps": 5000,
    "contributors_bps": 4000,
    "protocol_bps": 1000,
    "contributor_cap_bps": 5000,
    "platform_fee": "1000000000000000",
    "training_price_per_token": "1000000000000",
}


def proposal(pid: str, state: str, voted: bool, description: str = "Cap at 60%") -> dict[str, Any]:
    return {
        "id": pid,
        "description": description,
        "state": state,
        "actions": ["setContributorCap(6000 (60%))"],
        "votes": {"for": str(5 * 10**18), "against": "0", "abstain": "0"},
        "deadline": 10,
        "eta": None,
        "voted": voted,
    }


class FakeGovernance:
    def __init__(self, proposals: list[dict[str, Any]]) -> None:
        self.items = proposals
        self.votes: list[tuple[str, str]] = []
        self.refuse: str | None = None

    def info(self) -> dict[str, Any]:
        return {"parameters": PARAMETERS, "me": {"votes": str(5 * 10**18)}}

    def proposals(self) -> list[Proposal]:
        return [Proposal.from_api(item) for item in self.items]

    def vote(self, pid: str, support: str) -> Proposal:
        if self.refuse:
            raise OpenLedgerError(self.refuse, 409)
        self.votes.append((pid, support))
        item = next(item for item in self.items if item["id"] == pid)
        item["voted"] = True
        return Proposal.from_api(item)


class FakeClient:
    def __init__(self, governance: FakeGovernance) -> None:
        self.governance = governance


def test_parameters_and_proposals_are_shown_escaped() -> None:
    fake = FakeGovernance([proposal("1", "executed", False, "<b>bold</b> idea"), proposal("2", "active", False)])
    panel = ProposalsPanel(lambda: FakeClient(fake))  # type: ignore[arg-type, return-value]
    panel.load()
    assert "50%" in panel.parameters_table.value and "40%" in panel.parameters_table.value
    assert "0.001 OPEN" in panel.parameters_table.value
    assert (
        "&lt;b&gt;bold&lt;/b&gt; idea" in panel.proposals_table.value
        and "<b>bold</b>" not in panel.proposals_table.value
    )
    assert "5 gOPEN" in panel.votes.value
    assert panel.choice.options == (("Cap at 60%", "2"),)  # only the open one you have not voted on


def test_voting_from_the_panel_and_a_refusal_as_a_message() -> None:
    fake = FakeGovernance([proposal("2", "active", False)])
    panel = ProposalsPanel(lambda: FakeClient(fake))  # type: ignore[arg-type, return-value]
    panel.load()
    fake.refuse = "voting on proposal 2 is closed"
    panel.buttons[1].click()
    assert "voting on proposal 2 is closed" in panel.vote_status.value and fake.votes == []
    fake.refuse = None
    panel.buttons[0].click()
    assert fake.votes == [("2", "for")] and "You voted for" in panel.vote_status.value
    assert panel.choice.options == () and all(button.disabled for button in panel.buttons)


def test_nothing_to_vote_on() -> None:
    panel = ProposalsPanel(lambda: FakeClient(FakeGovernance([])))  # type: ignore[arg-type, return-value]
    panel.load()
    assert "No proposals yet." in panel.proposals_table.value and all(b.disabled for b in panel.buttons)
