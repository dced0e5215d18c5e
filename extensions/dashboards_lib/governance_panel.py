"""The proposals panel of the contributor dashboard: the governed parameters in force, every proposal with its state
and tallies, and For / Against / Abstain buttons for an open one (signed by your own platform wallet).

Its own module so the dashboards' look can change without touching it; the dashboard adds `sections()` to its page
and calls `load()` on refresh.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import ipywidgets as widgets

from extensions.dashboards_lib.common import StatusLine, badge, esc, guarded, html_table, open_amount, section
from openledger_sdk.client import Client
from openledger_sdk.governance import Proposal

PERCENT_KEYS = (
    ("owner_bps", "Model owner share"),
    ("contributors_bps", "Contributors' share"),
    ("protocol_bps", "Protocol share"),
    ("contributor_cap_bps", "Cap per contributor"),
)
AMOUNT_KEYS = (("platform_fee", "Platform fee per inference"), ("training_price_per_token", "Training price per token"))


def parameter_rows(parameters: dict) -> list[tuple[str, str]]:
    rows = [(label, f"{Decimal(parameters[key]) / 100:g}%") for key, label in PERCENT_KEYS]
    return rows + [(label, open_amount(parameters[key])) for key, label in AMOUNT_KEYS]


def proposal_rows(proposals: list[Proposal]) -> list[tuple]:
    return [
        (
            p.description,
            "; ".join(p.actions),
            badge(p.state),
            f"{p.votes_for:g}",
            f"{p.votes_against:g}",
            f"{p.votes_abstain:g}",
            "yes" if p.voted else "no",
        )
        for p in proposals
    ]


class ProposalsPanel:
    """Parameters in force, proposals, and voting on an active one."""

    def __init__(self, client_of: Callable[[], Client]) -> None:
        self._client_of = client_of  # the dashboard's client, looked up when used (it connects after building)
        self.status = StatusLine()
        self.parameters_table = widgets.HTML()
        self.votes = widgets.HTML()
        self.proposals_table = widgets.HTML()
        self.choice = widgets.Dropdown(description="Proposal", options=[], layout={"width": "520px"})
        self.buttons = [
            widgets.Button(description=label.capitalize(), button_style=style, layout={"width": "110px"})
            for label, style in (("for", "success"), ("against", "danger"), ("abstain", ""))
        ]
        for button in self.buttons:
            button.on_click(lambda clicked: self.vote(clicked.description.lower()))
        self.vote_status = StatusLine()

    @property
    def client(self) -> Client:
        return self._client_of()

    def sections(self) -> list[widgets.Widget]:
        return [
            section("Governance: the fee split you vote on"),
            self.status,
            self.parameters_table,
            self.votes,
            self.proposals_table,
            widgets.HBox([self.choice, *self.buttons]),
            self.vote_status,
        ]

    @guarded(lambda self: self.status, "load the governance proposals")
    def load(self) -> None:
        self.status.clear()
        governance = self.client.governance
        info = governance.info()
        self.parameters_table.value = html_table(("parameter", "in force"), parameter_rows(info["parameters"]), "")
        me = info["me"]
        self.votes.value = (
            f"<p>Your votes: <b>{esc(open_amount(me['votes']).replace('OPEN', 'gOPEN'))}</b> "
            "(OPEN you wrapped and delegated; notebook 06 shows how).</p>"
        )
        proposals = governance.proposals()
        columns = ("proposal", "change", "state", "for", "against", "abstain", "you voted")
        self.proposals_table.value = html_table(columns, proposal_rows(proposals), "No proposals yet.")
        open_ones = [p for p in proposals if p.state == "active" and not p.voted]
        self.choice.options = [(p.description[:80], p.id) for p in open_ones]
        self.choice.value = open_ones[0].id if open_ones else None  # the first open one, ready to vote on
        for button in self.buttons:
            button.disabled = not open_ones

    @guarded(lambda self: self.vote_status, "vote")
    def vote(self, support: str) -> None:
        if not self.choice.value:
            self.vote_status.show("warning", "No open proposal to vote on.")
            return
        voted = self.client.governance.vote(self.choice.value, support)
        self.vote_status.show(
            "success",
            f"You voted {support}: now {voted.votes_for:g} for, "
            f"{voted.votes_against:g} against, {voted.votes_abstain:g} abstaining.",
        )
        self.load()
