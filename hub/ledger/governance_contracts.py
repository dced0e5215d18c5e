"""Typed wrappers over the governance contracts: gOPEN (votes), the Governor, its timelock, ProtocolParameters.

Like hub.ledger.contracts: writes return PreparedCalls (the platform's relay signs them with a user's custodial
key), views return plain values or dataclasses and raise ContractRevert with the decoded error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from eth_hash.auto import keccak
from eth_utils import to_checksum_address
from web3 import Web3

from hub.ledger.contracts import ContractWrapper
from hub.ledger.tx import PreparedCall
from openledger_sdk.ledger.parameters import GovernedParameters

PROPOSER_ROLE = keccak(b"PROPOSER_ROLE")
CANCELLER_ROLE = keccak(b"CANCELLER_ROLE")
EXECUTOR_ROLE = keccak(b"EXECUTOR_ROLE")
TIMELOCK_ADMIN_ROLE = b"\x00" * 32  # TimelockController's admin is DEFAULT_ADMIN_ROLE in OpenZeppelin 5

# GovernorCountingSimple's support values.
AGAINST, FOR, ABSTAIN = 0, 1, 2
SUPPORT = {"against": AGAINST, "for": FOR, "abstain": ABSTAIN}


class ProposalState(IntEnum):
    """IGovernor.ProposalState, in its order."""

    PENDING = 0
    ACTIVE = 1
    CANCELED = 2
    DEFEATED = 3
    SUCCEEDED = 4
    QUEUED = 5
    EXPIRED = 6
    EXECUTED = 7


class GovernanceToken(ContractWrapper):
    NAME = "GovernanceToken"
    # Votes, clock and proposal states depend on the block timestamp: read them as a transaction sent now would see
    # them ("pending"), not as of the last block, which on an idle dev chain can be minutes old.
    VIEW_BLOCK = "pending"

    def deposit_for(self, account: str, amount: int) -> PreparedCall:
        """Wrap: pulls `amount` OPEN from the sender (approve the wrapper on OPEN first), mints gOPEN to `account`."""
        return self.prepare("depositFor", to_checksum_address(account), amount)

    def withdraw_to(self, account: str, amount: int) -> PreparedCall:
        return self.prepare("withdrawTo", to_checksum_address(account), amount)

    def delegate(self, delegatee: str) -> PreparedCall:
        return self.prepare("delegate", to_checksum_address(delegatee))

    def balance_of(self, account: str) -> int:
        return int(self.view("balanceOf", to_checksum_address(account)))

    def votes(self, account: str) -> int:
        return int(self.view("getVotes", to_checksum_address(account)))

    def past_votes(self, account: str, timepoint: int) -> int:
        return int(self.view("getPastVotes", to_checksum_address(account), timepoint))

    def delegates(self, account: str) -> str:
        return self.view("delegates", to_checksum_address(account))

    def clock(self) -> int:
        return int(self.view("clock"))

    def underlying(self) -> str:
        return self.view("underlying")


class GovernanceTimelock(ContractWrapper):
    NAME = "GovernanceTimelock"
    VIEW_BLOCK = "pending"  # as GovernanceToken

    def has(self, role: bytes, account: str) -> bool:
        return bool(self.view("hasRole", role, to_checksum_address(account)))

    def grant(self, role: bytes, account: str) -> PreparedCall:
        return self.prepare("grantRole", role, to_checksum_address(account))

    def renounce(self, role: bytes, account: str) -> PreparedCall:
        return self.prepare("renounceRole", role, to_checksum_address(account))

    def min_delay(self) -> int:
        return int(self.view("getMinDelay"))


@dataclass(frozen=True)
class ProposalCall:
    """One action of a proposal: the target contract, ETH value and calldata."""

    target: str
    value: int
    calldata: bytes


class OpenLedgerGovernor(ContractWrapper):
    NAME = "OpenLedgerGovernor"
    VIEW_BLOCK = "pending"  # as GovernanceToken

    def propose(self, calls: Sequence[ProposalCall], description: str) -> PreparedCall:
        targets, values, datas = _columns(calls)
        return self.prepare("propose", targets, values, datas, description)

    def cast_vote(self, proposal_id: int, support: int, reason: str = "") -> PreparedCall:
        if reason:
            return self.prepare("castVoteWithReason", proposal_id, support, reason)
        return self.prepare("castVote", proposal_id, support)

    def queue(self, calls: Sequence[ProposalCall], description: str) -> PreparedCall:
        return self.prepare("queue", *_columns(calls), description_hash(description))

    def execute(self, calls: Sequence[ProposalCall], description: str) -> PreparedCall:
        return self.prepare("execute", *_columns(calls), description_hash(description))

    def proposal_id(self, calls: Sequence[ProposalCall], description: str) -> int:
        return int(self.view("hashProposal", *_columns(calls), description_hash(description)))

    def state(self, proposal_id: int) -> ProposalState:
        return ProposalState(self.view("state", proposal_id))

    def votes(self, proposal_id: int) -> tuple[int, int, int]:
        """(against, for, abstain) in gOPEN base units."""
        against, for_, abstain = self.view("proposalVotes", proposal_id)
        return int(against), int(for_), int(abstain)

    def snapshot(self, proposal_id: int) -> int:
        return int(self.view("proposalSnapshot", proposal_id))

    def deadline(self, proposal_id: int) -> int:
        return int(self.view("proposalDeadline", proposal_id))

    def eta(self, proposal_id: int) -> int:
        return int(self.view("proposalEta", proposal_id))

    def proposer(self, proposal_id: int) -> str:
        return self.view("proposalProposer", proposal_id)

    def has_voted(self, proposal_id: int, account: str) -> bool:
        return bool(self.view("hasVoted", proposal_id, to_checksum_address(account)))

    def quorum(self, timepoint: int) -> int:
        return int(self.view("quorum", timepoint))

    def proposal_threshold(self) -> int:
        return int(self.view("proposalThreshold"))

    def voting_delay(self) -> int:
        return int(self.view("votingDelay"))

    def voting_period(self) -> int:
        return int(self.view("votingPeriod"))

    def timelock(self) -> str:
        return self.view("timelock")


class ProtocolParameters(ContractWrapper):
    NAME = "ProtocolParameters"

    def set_fee_split(self, owner_bps: int, contributors_bps: int, protocol_bps: int) -> PreparedCall:
        return self.prepare("setFeeSplit", owner_bps, contributors_bps, protocol_bps)

    def set_contributor_cap(self, cap_bps: int) -> PreparedCall:
        return self.prepare("setContributorCap", cap_bps)

    def set_platform_fee(self, fee: int) -> PreparedCall:
        return self.prepare("setPlatformFee", fee)

    def set_training_price_per_token(self, price: int) -> PreparedCall:
        return self.prepare("setTrainingPricePerToken", price)

    def parameters(self) -> GovernedParameters:
        """The parameters in force now (`block` 0: not tied to a block; use parameters_at for that)."""
        return GovernedParameters(*self.view("parameters"), source="chain")

    def parameters_at(self, block: int) -> tuple[GovernedParameters, int]:
        """The parameters in force at `block` and the block they were set in (from the contract's own history)."""
        values, from_block = self.view("parametersAt", block)
        return GovernedParameters(*values, block=block, source="chain"), int(from_block)

    def parameters_hash_at(self, block: int) -> bytes:
        return bytes(self.view("parametersHashAt", block))

    def training_price_per_token(self) -> int:
        return int(self.view("trainingPricePerToken"))

    def owner(self) -> str:
        return self.view("owner")


def description_hash(description: str) -> bytes:
    return keccak(description.encode())


def _columns(calls: Sequence[ProposalCall]) -> tuple[list[str], list[int], list[bytes]]:
    return (
        [to_checksum_address(call.target) for call in calls],
        [call.value for call in calls],
        [call.calldata for call in calls],
    )


@dataclass
class Governance:
    """The four governance contracts on one chain."""

    token: GovernanceToken
    timelock: GovernanceTimelock
    governor: OpenLedgerGovernor
    parameters: ProtocolParameters

    @classmethod
    def at(cls, w3: Web3, addresses: dict[str, str]) -> Governance:
        return cls(
            GovernanceToken(w3, addresses["GovernanceToken"]),
            GovernanceTimelock(w3, addresses["GovernanceTimelock"]),
            OpenLedgerGovernor(w3, addresses["OpenLedgerGovernor"]),
            ProtocolParameters(w3, addresses["ProtocolParameters"]),
        )

    @property
    def addresses(self) -> dict[str, str]:
        return {w.NAME: w.address for w in (self.token, self.timelock, self.governor, self.parameters)}
