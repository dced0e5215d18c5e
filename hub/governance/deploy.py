"""Deploying the governance contracts after the ledger's five, and leaving the deployer without any power over them.

Order: gOPEN (wraps the ledger's OPEN) → timelock (deployer as temporary admin) → governor → ProtocolParameters
(owned by the timelock from its constructor, genesis values from [rewards]) → the governor becomes the timelock's
only proposer and canceller → the deployer renounces the timelock admin role. After that, a passed vote is the only
way to change a parameter (or the governance settings themselves). A crash before the deployment record is
written redeploys the lot at the next start, so a half-configured set is never attached.
"""

from __future__ import annotations

import logging

from eth_account.signers.local import LocalAccount
from web3 import Web3

from hub.governance.config import GovernanceSettings
from hub.governance.parameters import GovernedParameters, from_settings
from hub.ledger.governance_contracts import (
    CANCELLER_ROLE,
    PROPOSER_ROLE,
    TIMELOCK_ADMIN_ROLE,
    GovernanceTimelock,
)
from hub.ledger.tx import constructor_call, send_call
from hub.rewards.config import RewardSettings

log = logging.getLogger("hub.governance")


def genesis_parameters(rewards: RewardSettings) -> GovernedParameters:
    """The first on-chain parameters: the [rewards] settings in basis points and base units."""
    return from_settings(rewards)


def deploy_governance(
    w3: Web3,
    deployer: LocalAccount,
    open_token: str,
    rewards: RewardSettings,
    settings: GovernanceSettings,
) -> dict[str, str]:
    """Deploy and configure the four governance contracts; their addresses by name."""
    genesis = genesis_parameters(rewards)

    def deploy(name: str, *args: object) -> str:
        address = send_call(w3, constructor_call(name, w3, *args), deployer)["contractAddress"]
        log.info("deployed %s at %s", name, address)
        return address

    token = deploy("GovernanceToken", open_token)
    timelock_address = deploy("GovernanceTimelock", settings.timelock_delay, deployer.address)
    governor = deploy(
        "OpenLedgerGovernor",
        token,
        timelock_address,
        settings.voting_delay,
        settings.voting_period,
        settings.proposal_threshold_wei,
        settings.quorum_percent,
    )
    parameters = deploy("ProtocolParameters", timelock_address, genesis.values())
    timelock = GovernanceTimelock(w3, timelock_address)
    for role in (PROPOSER_ROLE, CANCELLER_ROLE):
        timelock.send(timelock.grant(role, governor), deployer)
    timelock.send(timelock.renounce(TIMELOCK_ADMIN_ROLE, deployer.address), deployer)
    return {
        "GovernanceToken": token,
        "GovernanceTimelock": timelock_address,
        "OpenLedgerGovernor": governor,
        "ProtocolParameters": parameters,
    }
