"""A class vote, end to end, from the admin's seat: fund the students, each wraps OPEN and delegates to themself,
one proposes a parameter change, everyone votes, then the proposal is queued and executed.

Each student's steps are made with a short-lived token of that student (as the dry run does), so every vote is
signed by the student's own custodial wallet: the admin holds no votes and casts none. On a dev chain the admin moves
the chain's clock past each waiting period (`POST /api/admin/governance/advance`); elsewhere it waits in real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hub.workshop.hub_api import HubAPI, HubAPIError
from hub.workshop.steps import fund

TOKEN_SECONDS = 3600


@dataclass
class ClassVote:
    proposal: dict[str, Any]
    log: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # student → why their step was refused


def _wait(admin: HubAPI, student: HubAPI, seconds: int, say: Callable[[str], None]) -> None:
    """Let `seconds` of chain time pass: advanced at once on a dev chain, else waited for."""
    try:
        admin.platform("POST", "api/admin/governance/advance", json={"seconds": seconds})
        say(f"advanced the dev chain's clock by {seconds} s")
        return
    except HubAPIError as err:
        if ": 409 " not in str(err):  # 409: not a dev chain, so real time must pass
            raise
    target = student.platform("GET", "api/governance")["clock"] + seconds
    say(f"waiting {seconds} s of chain time")
    while student.platform("GET", "api/governance")["clock"] < target:
        time.sleep(min(10, seconds))


def class_vote(
    admin: HubAPI,
    users: list[str],
    changes: dict[str, str],
    description: str,
    *,
    wrap: str = "10",
    against: frozenset[str] = frozenset(),
    say: Callable[[str], None] = print,
) -> ClassVote:
    """Run the vote with `users` (the first one proposes); those in `against` vote against, the others for."""
    if not users:
        raise ValueError("a class vote needs at least one student")
    result = ClassVote(proposal={})

    def note(line: str) -> None:
        result.log.append(line)
        say(line)

    funded = fund(admin, users, wrap)
    note(f"funded {sum(status == 'ok' for status in funded.values())}/{len(users)} students with {wrap} OPEN")
    seats = {user: HubAPI(admin.hub_url, admin.new_token(user, "class vote", TOKEN_SECONDS)) for user in users}
    try:
        for seat in seats.values():
            seat.platform("POST", "api/governance/delegate", json={"wrap": wrap, "wait_s": 60})
        note(f"{len(users)} students wrapped {wrap} OPEN into gOPEN and delegated to themselves")
        proposer = seats[users[0]]
        rules = proposer.platform("GET", "api/governance")["rules"]
        _wait(admin, proposer, 1, note)  # votes count from a past moment: let the delegations settle in
        made = proposer.platform(
            "POST", "api/governance/proposals", json={"description": description, "changes": changes, "wait_s": 60}
        )
        pid = made["id"]
        note(f"{users[0]} proposed {pid}: {description}")
        _wait(admin, proposer, rules["voting_delay_s"] + 1, note)
        for user, seat in seats.items():
            support = "against" if user in against else "for"
            try:
                seat.platform("POST", f"api/governance/proposals/{pid}/vote", json={"support": support, "wait_s": 60})
            except HubAPIError as err:
                result.refused[user] = str(err)
        note(f"{len(users) - len(result.refused)} votes cast")
        _wait(admin, proposer, rules["voting_period_s"] + 1, note)
        queued = proposer.platform("POST", f"api/governance/proposals/{pid}/queue", json={"wait_s": 60})
        note(f"queued in the timelock: {queued['proposal']['state']}")
        _wait(admin, proposer, rules["timelock_delay_s"] + 1, note)
        done = proposer.platform("POST", f"api/governance/proposals/{pid}/execute", json={"wait_s": 60})
        result.proposal = done["proposal"]
        note(f"proposal {pid} is {result.proposal['state']}: the change applies from the next settlement epoch")
    finally:
        for seat in seats.values():
            seat.http.close()
    return result
