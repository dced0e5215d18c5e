"""Parameter-change proposals: a change request checked and turned into ProtocolParameters calls, raw calldata
decoded and checked, and the proposals on chain listed with their state and tallies.

Every call is checked twice before anything is signed: our own rules give a precise message (percents summing to
100, a cap in (0, 100], no negative or over-precise amounts), and an eth_call of the setter *from the timelock's
address* (no signature needed for a call) confirms the contract accepts it, so a proposal that could never execute
is refused at once instead of failing after a vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from eth_utils import to_checksum_address
from hexbytes import HexBytes

from hub.governance.actions import open_text
from hub.ledger.errors import ContractRevert
from hub.ledger.governance_contracts import Governance, ProposalCall, ProposalState
from hub.ledger.tx import PreparedCall, simulate
from hub.rewards.money import BPS, bps, open_to_wei

MAX_DESCRIPTION = 4000
MAX_CALLS = 8
SPLIT_KEYS = ("owner_percent", "contributors_percent", "protocol_percent")
CHANGE_KEYS = (*SPLIT_KEYS, "contributor_cap_percent", "platform_fee", "training_price")


class ProposalError(ValueError):
    """A proposal that cannot be made as asked; the message says which value and why. Nothing was sent."""


def _percent_bps(key: str, value: Any) -> int:
    try:
        points = bps(str(value))
    except (TypeError, ValueError) as err:
        raise ProposalError(f"{key}: {err}") from None
    if not 0 <= points <= BPS:
        raise ProposalError(f"{key} must be between 0 and 100, got {value}")
    return points


def _amount_wei(key: str, value: Any) -> int:
    try:
        return open_to_wei(str(value), key)
    except (TypeError, ValueError) as err:
        raise ProposalError(f'{key}: {err} (an amount of OPEN, e.g. "0.002")') from None


def change_calls(governance: Governance, changes: dict[str, Any]) -> list[PreparedCall]:
    """ProtocolParameters setter calls for a change request (keys as in CHANGE_KEYS), checked."""
    unknown = sorted(set(changes) - set(CHANGE_KEYS))
    if unknown:
        governed = ", ".join(CHANGE_KEYS)
        raise ProposalError(f"unknown parameter(s) {', '.join(unknown)}; the governed ones are {governed}")
    params, calls = governance.parameters, []
    given = [key for key in SPLIT_KEYS if key in changes]
    if given:
        if len(given) != len(SPLIT_KEYS):
            raise ProposalError("the fee split changes as a whole: give owner_percent, contributors_percent and "
                                "protocol_percent together (they must sum to 100)")  # fmt: skip
        split = [_percent_bps(key, changes[key]) for key in SPLIT_KEYS]
        if sum(split) != BPS:
            total = sum(Decimal(str(changes[key])) for key in SPLIT_KEYS)
            raise ProposalError(f"owner + contributors + protocol percent must be exactly 100, not {total}")
        calls.append(params.set_fee_split(*split))
    if "contributor_cap_percent" in changes:
        cap = _percent_bps("contributor_cap_percent", changes["contributor_cap_percent"])
        if cap == 0:
            raise ProposalError("contributor_cap_percent must be above 0 (100 turns the cap off)")
        calls.append(params.set_contributor_cap(cap))
    if "platform_fee" in changes:
        calls.append(params.set_platform_fee(_amount_wei("platform_fee", changes["platform_fee"])))
    if "training_price" in changes:
        calls.append(params.set_training_price_per_token(_amount_wei("training_price", changes["training_price"])))
    return calls


def raw_calls(governance: Governance, calldatas: list[str]) -> list[PreparedCall]:
    """Raw ProtocolParameters calldata (0x hex) decoded into calls; malformed or foreign calldata is refused."""
    params, calls = governance.parameters, []
    for index, text in enumerate(calldatas):
        try:
            data = HexBytes(text)
            function, args = params.contract.decode_function_input(data)
        except Exception as err:  # noqa: BLE001 - web3 raises several types for undecodable input
            raise ProposalError(
                f"calls[{index}] is not ProtocolParameters calldata (a 0x hex setter call such as "
                f"setPlatformFee(uint256)): {type(err).__name__}: {str(err)[:200]}"
            ) from None
        if not function.fn_name.startswith("set"):
            raise ProposalError(f"calls[{index}] calls {function.fn_name}, which changes nothing: propose a setter")
        calls.append(params.prepare(function.fn_name, *args.values()))
    return calls


def check_calls(governance: Governance, calls: list[PreparedCall]) -> None:
    """Each call as the timelock would make it (eth_call from its address): a revert here is a ProposalError."""
    if not calls:
        raise ProposalError(f"nothing to change: give `changes` (one or more of {', '.join(CHANGE_KEYS)}) or `calls`")
    if len(calls) > MAX_CALLS:
        raise ProposalError(f"at most {MAX_CALLS} calls per proposal")
    for call in calls:
        try:
            simulate(governance.parameters.w3, call, governance.timelock.address)
        except ContractRevert as err:
            raise ProposalError(f"ProtocolParameters.{call.function} would revert: {err}") from None


def as_actions(calls: list[PreparedCall]) -> list[ProposalCall]:
    return [ProposalCall(call.to or "", call.value, bytes(HexBytes(call.data))) for call in calls]


@dataclass(frozen=True)
class OnChainProposal:
    """A proposal as ProposalCreated logged it: what queue and execute must repeat exactly."""

    proposal_id: int
    proposer: str
    actions: list[ProposalCall]
    description: str
    block: int


def proposals_on_chain(governance: Governance, from_block: int) -> list[OnChainProposal]:
    found = []
    for event in governance.governor.events("ProposalCreated", from_block=from_block):
        args = event["args"]
        actions = [
            ProposalCall(to_checksum_address(target), int(value), bytes(data))
            for target, value, data in zip(args["targets"], args["values"], args["calldatas"], strict=True)
        ]
        found.append(OnChainProposal(int(args["proposalId"]), args["proposer"], actions, args["description"],
                                     int(event["blockNumber"])))  # fmt: skip
    return found


def find_proposal(governance: Governance, from_block: int, proposal_id: int) -> OnChainProposal | None:
    return next((p for p in proposals_on_chain(governance, from_block) if p.proposal_id == proposal_id), None)


def describe_action(governance: Governance, action: ProposalCall) -> str:
    """`setPlatformFee(2000000000000000)`-style text, with amounts also in OPEN."""
    if action.target != governance.parameters.address:
        return f"call {action.target} with {len(action.calldata)} bytes"
    try:
        function, args = governance.parameters.contract.decode_function_input(action.calldata)
    except Exception:  # noqa: BLE001 - someone else's proposal may carry anything
        return f"undecodable call to ProtocolParameters ({len(action.calldata)} bytes)"
    shown = []
    for name, value in args.items():
        lowered = name.lower()
        if lowered.endswith("bps"):
            shown.append(f"{name}={value} ({Decimal(value) / 100}%)")
        elif "fee" in lowered or "price" in lowered:
            shown.append(f"{name}={value} ({open_text(value)} OPEN)")
        else:
            shown.append(f"{name}={value}")
    return f"{function.fn_name}({', '.join(shown)})"


def proposal_view(governance: Governance, proposal: OnChainProposal, voter: str | None) -> dict[str, Any]:
    governor, pid = governance.governor, proposal.proposal_id
    state = governor.state(pid)
    against, for_, abstain = governor.votes(pid)
    snapshot = governor.snapshot(pid)
    eta = governor.eta(pid) if state in (ProposalState.QUEUED, ProposalState.EXECUTED) else 0
    return {
        "id": str(pid),  # uint256: a JSON number would lose digits
        "proposer": proposal.proposer,
        "description": proposal.description,
        "actions": [describe_action(governance, action) for action in proposal.actions],
        "state": state.name.lower(),
        "votes": {"for": str(for_), "against": str(against), "abstain": str(abstain)},
        "quorum": str(governor.quorum(snapshot)) if snapshot < governance.token.clock() else None,
        "snapshot": snapshot,
        "deadline": governor.deadline(pid),
        "eta": eta or None,
        "voted": governor.has_voted(pid, voter) if voter else None,
        "block": proposal.block,
    }
