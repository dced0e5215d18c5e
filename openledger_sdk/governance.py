"""OPEN holders govern the fee split, the contributor cap, the platform fee and the training price: `ol.governance`.

    ol.governance.delegate(wrap="100")          # lock 100 OPEN as gOPEN and delegate its votes to yourself
    p = ol.governance.propose("Lower the platform fee", platform_fee="0.0005")
    ol.governance.vote(p, "for")                # with the votes delegated to you when the proposal was made
    ol.governance.proposals()                   # every proposal: state, votes for / against / abstain, deadline
    ol.governance.queue(p); ol.governance.execute(p)   # once passed, and after the timelock delay
    ol.governance.parameters()                  # what is in force now (and for the current settlement epoch)

Your platform wallet signs every step (it needs a little gas: your instructor's faucet gives it). Votes count at a
proposal's snapshot (when its voting opens), so wrap and delegate before then. Changes apply from the next
settlement epoch after execution. Amounts are OPEN as decimal strings ("0.002"), percentages as strings ("55").
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from openledger_sdk.errors import OpenLedgerError

if TYPE_CHECKING:
    from openledger_sdk.client import Client

WEI = Decimal(10**18)
SUPPORTS = ("for", "against", "abstain")


@dataclass(frozen=True)
class Proposal:
    """One proposal as the governor reports it; votes in gOPEN (Decimal)."""

    id: str
    description: str
    state: str
    actions: list[str]
    votes_for: Decimal
    votes_against: Decimal
    votes_abstain: Decimal
    deadline: int
    eta: int | None
    voted: bool | None
    raw: dict[str, Any]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Proposal:
        votes = data["votes"]
        return cls(
            data["id"],
            data["description"],
            data["state"],
            data["actions"],
            Decimal(votes["for"]) / WEI,
            Decimal(votes["against"]) / WEI,
            Decimal(votes["abstain"]) / WEI,
            data["deadline"],
            data["eta"],
            data["voted"],
            data,
        )

    def __str__(self) -> str:
        return (
            f"#{self.id[:10]}… {self.state}: {self.description!r} — for {self.votes_for.normalize():f}, against "
            f"{self.votes_against.normalize():f}, abstain {self.votes_abstain.normalize():f} gOPEN"
        )


def _id(proposal: Proposal | str | int) -> str:
    return proposal.id if isinstance(proposal, Proposal) else str(proposal)


class Governance:
    """`ol.governance`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def info(self) -> dict[str, Any]:
        """Contracts, voting rules (seconds), parameters in force, and your OPEN / gOPEN / votes / delegate."""
        return self._client.request("GET", "platform", "api/governance")

    def parameters(self) -> dict[str, Any]:
        """The parameters in force now (basis points and OPEN base units, with the block and hash)."""
        return self.info()["parameters"]

    def delegate(self, wrap: str | int | Decimal = 0, to: str | None = None, wait_s: float = 30) -> dict[str, Any]:
        """Wrap `wrap` OPEN into gOPEN (optional) and delegate your votes to `to` (default: yourself)."""
        body: dict[str, Any] = {"wrap": str(wrap), "wait_s": wait_s}
        if to is not None:
            body["to"] = to
        return self._client.request("POST", "platform", "api/governance/delegate", json=body)

    def propose(
        self, description: str, *, calls: list[str] | None = None, wait_s: float = 30, **changes: str | int | Decimal
    ) -> Proposal:
        """Propose a change: any of owner_percent + contributors_percent + protocol_percent (together),
        contributor_cap_percent, platform_fee, training_price; or raw ProtocolParameters `calls` (0x calldata)."""
        body = {"description": description, "changes": {k: str(v) for k, v in changes.items()}, "wait_s": wait_s}
        answer = self._client.request(
            "POST", "platform", "api/governance/proposals", json=body | {"calls": calls or []}
        )
        return self.get(answer["id"])

    def proposals(self) -> list[Proposal]:
        """Every proposal, newest first."""
        answer = self._client.request("GET", "platform", "api/governance/proposals")
        return [Proposal.from_api(item) for item in answer["proposals"]]

    def get(self, proposal: Proposal | str | int) -> Proposal:
        wanted = _id(proposal)
        for item in self.proposals():
            if item.id == wanted:
                return item
        raise OpenLedgerError(f"no proposal {wanted}", 404)

    def vote(self, proposal: Proposal | str | int, support: str, reason: str = "", wait_s: float = 30) -> Proposal:
        """Vote "for", "against" or "abstain" with the votes delegated to you at the proposal's snapshot."""
        if support not in SUPPORTS:
            raise OpenLedgerError(f"support must be one of {', '.join(SUPPORTS)}, not {support!r}", 400)
        body = {"support": support, "reason": reason, "wait_s": wait_s}
        return self._step(proposal, "vote", body)

    def queue(self, proposal: Proposal | str | int, wait_s: float = 30) -> Proposal:
        """Queue a succeeded proposal in the timelock (anyone may)."""
        return self._step(proposal, "queue", {"wait_s": wait_s})

    def execute(self, proposal: Proposal | str | int, wait_s: float = 30) -> Proposal:
        """Execute a queued proposal after the timelock delay (anyone may)."""
        return self._step(proposal, "execute", {"wait_s": wait_s})

    def _step(self, proposal: Proposal | str | int, step: str, body: dict[str, Any]) -> Proposal:
        path = f"api/governance/proposals/{_id(proposal)}/{step}"
        return Proposal.from_api(self._client.request("POST", "platform", path, json=body)["proposal"])
