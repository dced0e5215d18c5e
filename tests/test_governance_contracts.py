"""Governance contracts on a real anvil, deployed by the platform's deploy flow: who may change the parameters (only
the timelock, after a passed vote), the deployer's lack of any bypass, invalid parameters, and a vote end to end.

Time moves with anvil's evm_increaseTime + evm_mine: the governance clock is the block timestamp.
"""

from __future__ import annotations

import pytest
from eth_account import Account

from hub.governance.deploy import genesis_parameters
from hub.ledger.errors import ContractRevert
from hub.ledger.governance_contracts import (
    CANCELLER_ROLE,
    FOR,
    PROPOSER_ROLE,
    TIMELOCK_ADMIN_ROLE,
    ProposalCall,
    ProposalState,
    ProtocolParameters,
)
from hub.ledger.tx import constructor_call, send_call
from openledger_sdk.ledger.parameters import GovernedParameters
from tests import ledger_fixtures
from tests.governance_fixtures import advance, governance, voter
from tests.ledger_fixtures import LedgerEnv, fund

anvil_node = ledger_fixtures.anvil_node
ledger_env = ledger_fixtures.ledger_env

OPEN = 10**18
GENESIS = GovernedParameters(5000, 4000, 1000, 5000, 10**15, 10**13)


def reverts(name: str):
    return pytest.raises(ContractRevert, match=rf"reverted with {name}\(")


def test_genesis_from_settings_and_deployer_keeps_no_bypass(ledger_env: LedgerEnv) -> None:
    gov, deployer = governance(ledger_env), ledger_env.deployer
    assert gov.parameters.parameters().values() == genesis_parameters(ledger_env.settings.rewards).values()
    assert gov.parameters.training_price_per_token() == ledger_env.settings.rewards.training_price_wei
    assert gov.parameters.owner() == gov.timelock.address
    assert gov.governor.timelock() == gov.timelock.address
    assert gov.token.underlying() == ledger_env.ledger.token.address
    assert gov.timelock.has(PROPOSER_ROLE, gov.governor.address)
    assert gov.timelock.has(CANCELLER_ROLE, gov.governor.address)
    for role in (TIMELOCK_ADMIN_ROLE, PROPOSER_ROLE, CANCELLER_ROLE):
        assert not gov.timelock.has(role, deployer.address)
    # The deployer (and the platform's operator) can change nothing directly ...
    for account in (deployer, ledger_env.operator):
        with reverts("OwnableUnauthorizedAccount"):
            gov.parameters.send(gov.parameters.set_platform_fee(0), account)
        with reverts("AccessControlUnauthorizedAccount"):
            gov.timelock.send(gov.timelock.grant(PROPOSER_ROLE, account.address), account)
    # ... nor schedule through the timelock, nor use the governor's onlyGovernance setters.
    call = gov.parameters.set_platform_fee(0)
    schedule = gov.timelock.prepare("schedule", call.to, 0, bytes.fromhex(call.data[2:]), b"\0" * 32, b"\0" * 32, 60)
    with reverts("AccessControlUnauthorizedAccount"):
        gov.timelock.send(schedule, deployer)
    with reverts("GovernorOnlyExecutor"):
        gov.governor.send(gov.governor.prepare("setVotingPeriod", 1), deployer)
    assert gov.parameters.parameters().values() == genesis_parameters(ledger_env.settings.rewards).values()


def _own_parameters(env: LedgerEnv) -> ProtocolParameters:
    """A ProtocolParameters owned by `env.outsider`, to test its validation without a vote per case."""
    call = constructor_call("ProtocolParameters", env.ledger.w3, env.outsider.address, GENESIS.values())
    address = send_call(env.ledger.w3, call, env.outsider)["contractAddress"]
    return ProtocolParameters(env.ledger.w3, address)


def test_invalid_parameters_revert_and_change_nothing(ledger_env: LedgerEnv) -> None:
    params, owner = _own_parameters(ledger_env), ledger_env.outsider
    bad_genesis = GovernedParameters(5000, 4000, 999, 5000, 0, 0)
    with reverts("InvalidFeeSplit"):
        send_call(ledger_env.ledger.w3, constructor_call("ProtocolParameters", ledger_env.ledger.w3,
                                                        owner.address, bad_genesis.values()), owner)  # fmt: skip
    with reverts("InvalidFeeSplit") as info:
        params.send(params.set_fee_split(6000, 4000, 1), owner)
    assert info.value.error_args == {"ownerBps": 6000, "contributorsBps": 4000, "protocolBps": 1}
    with reverts("InvalidFeeSplit"):
        params.send(params.set_fee_split(5000, 4000, 0), owner)
    with reverts("InvalidContributorCap"):
        params.send(params.set_contributor_cap(10_001), owner)
    with reverts("InvalidContributorCap"):
        params.send(params.set_contributor_cap(0), owner)
    with pytest.raises(Exception, match="uint256|negative|OverflowError|out of bounds|Value"):
        params.set_platform_fee(-1)  # a negative fee cannot even be encoded
    assert params.parameters().values() == GENESIS.values() and int(params.view("historyLength")) == 1


def test_parameters_history_by_block(ledger_env: LedgerEnv) -> None:
    params, owner, w3 = _own_parameters(ledger_env), ledger_env.outsider, ledger_env.ledger.w3
    genesis_block = w3.eth.block_number
    params.send(params.set_platform_fee(7), owner)
    changed_block = w3.eth.block_number
    params.send(params.set_fee_split(6000, 3000, 1000), owner)
    at_genesis, since_genesis = params.parameters_at(genesis_block)
    assert (at_genesis.values(), since_genesis) == (GENESIS.values(), genesis_block)
    at_change, since = params.parameters_at(changed_block)
    assert (at_change.platform_fee, at_change.owner_bps, since) == (7, 5000, changed_block)
    latest, _ = params.parameters_at(w3.eth.block_number)
    assert (latest.platform_fee, latest.owner_bps, latest.protocol_bps) == (7, 6000, 1000)
    assert params.parameters_hash_at(genesis_block) != params.parameters_hash_at(changed_block)
    with reverts("BlockInFuture"):
        params.parameters_at(w3.eth.block_number + 10)


def test_vote_queue_execute_changes_a_parameter(ledger_env: LedgerEnv) -> None:
    env, gov = ledger_env, governance(ledger_env)
    settings = env.settings.governance
    alice, bob = voter(env, 100 * OPEN), voter(env, 5 * OPEN)
    nobody = Account.create()
    fund(env.node, nobody.address)
    calls = [
        ProposalCall(gov.parameters.address, 0, bytes.fromhex(gov.parameters.set_platform_fee(2 * 10**15).data[2:]))
    ]
    description = "Raise the platform fee to 0.002 OPEN"
    with reverts("GovernorInsufficientProposerVotes"):
        gov.governor.send(gov.governor.propose(calls, description), nobody)
    advance(env, 1)  # votes are read at a past timepoint
    gov.governor.send(gov.governor.propose(calls, description), alice)
    proposal = gov.governor.proposal_id(calls, description)
    assert gov.governor.state(proposal) == ProposalState.PENDING
    advance(env, settings.voting_delay + 1)
    assert gov.governor.state(proposal) == ProposalState.ACTIVE
    gov.governor.send(gov.governor.cast_vote(proposal, FOR), alice)
    with reverts("GovernorAlreadyCastVote"):
        gov.governor.send(gov.governor.cast_vote(proposal, FOR), alice)
    with reverts("GovernorUnexpectedProposalState"):
        gov.governor.send(gov.governor.queue(calls, description), alice)  # voting still open
    assert gov.governor.votes(proposal) == (0, 100 * OPEN, 0)
    advance(env, settings.voting_period + 1)
    with reverts("GovernorUnexpectedProposalState"):
        gov.governor.send(gov.governor.cast_vote(proposal, FOR), bob)  # after the deadline
    assert gov.governor.state(proposal) == ProposalState.SUCCEEDED
    gov.governor.send(gov.governor.queue(calls, description), bob)  # anyone may queue and execute
    assert gov.governor.state(proposal) == ProposalState.QUEUED
    with reverts("TimelockUnexpectedOperationState"):
        gov.governor.send(gov.governor.execute(calls, description), bob)
    assert gov.parameters.parameters().platform_fee == env.settings.rewards.platform_fee_wei
    before = env.ledger.w3.eth.block_number
    advance(env, settings.timelock_delay + 1)
    gov.governor.send(gov.governor.execute(calls, description), bob)
    assert gov.governor.state(proposal) == ProposalState.EXECUTED
    assert gov.parameters.parameters().platform_fee == 2 * 10**15
    assert gov.parameters.parameters_at(before)[0].platform_fee == env.settings.rewards.platform_fee_wei
