"""Helpers for governance tests on a real anvil: a funded voter with delegated gOPEN, moving the chain's clock, and
a proposal taken from proposal to execution by direct contract calls."""

from __future__ import annotations

from collections.abc import Sequence

from eth_account import Account
from eth_account.signers.local import LocalAccount

from hub.chain.anvil import rpc_call
from hub.ledger.governance_contracts import FOR, Governance, ProposalCall, ProposalState
from hub.ledger.tx import PreparedCall
from tests.ledger_fixtures import LedgerEnv, fund


def advance(env: LedgerEnv, seconds: int) -> None:
    """Move the chain's clock (the governance clock is the block timestamp) and mine a block."""
    rpc_call(env.node.rpc_url, "evm_increaseTime", [seconds])
    rpc_call(env.node.rpc_url, "evm_mine", [])


def governance(env: LedgerEnv) -> Governance:
    assert env.ledger.governance is not None, "the deploy flow deploys governance with the ledger"
    return env.ledger.governance


def voter(env: LedgerEnv, amount: int) -> LocalAccount:
    """A new funded account holding `amount` gOPEN, delegated to itself."""
    account = Account.create()
    fund(env.node, account.address)
    gov, token = governance(env), env.ledger.token
    token.send(token.mint(account.address, amount), env.operator)
    token.send(token.approve(gov.token.address, amount), account)
    gov.token.send(gov.token.deposit_for(account.address, amount), account)
    gov.token.send(gov.token.delegate(account.address), account)
    return account


def as_proposal_calls(calls: Sequence[PreparedCall]) -> list[ProposalCall]:
    return [ProposalCall(call.to or "", call.value, bytes.fromhex(call.data[2:])) for call in calls]


def pass_proposal(env: LedgerEnv, proposer: LocalAccount, calls: Sequence[PreparedCall], description: str) -> int:
    """Propose, vote for (as `proposer`, who must hold the quorum), queue and execute; the block it executed in."""
    gov, settings = governance(env), env.settings.governance
    actions = as_proposal_calls(calls)
    advance(env, 1)
    gov.governor.send(gov.governor.propose(actions, description), proposer)
    proposal = gov.governor.proposal_id(actions, description)
    advance(env, settings.voting_delay + 1)
    gov.governor.send(gov.governor.cast_vote(proposal, FOR), proposer)
    advance(env, settings.voting_period + 1)
    gov.governor.send(gov.governor.queue(actions, description), proposer)
    advance(env, settings.timelock_delay + 1)
    receipt = gov.governor.send(gov.governor.execute(actions, description), proposer)
    assert gov.governor.state(proposal) == ProposalState.EXECUTED
    return int(receipt["blockNumber"])
