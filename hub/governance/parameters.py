"""The parameters in force: read from ProtocolParameters on chain, or the [rewards] settings when there is none.

    parameters_in_force(ledger, settings.rewards)            # GovernedParameters now (latest block)
    parameters_in_force(ledger, settings.rewards, block=123) # as they were at block 123
    parameters_in_force(None, settings.rewards)              # no chain: the settings (source="settings")

`.training_price_per_token` (OPEN base units per token trained) is what ModelFactory charges; the fee split, cap
and platform fee are what inference metering uses, per epoch (hub.governance.periods).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from hub.rewards.config import RewardSettings
from hub.rewards.money import bps, wei_to_open
from openledger_sdk.ledger.parameters import GovernedParameters

if TYPE_CHECKING:
    from hub.ledger.contracts import Ledger
    from hub.platform.runtime import PlatformRuntime

__all__ = ["GovernedParameters", "from_settings", "parameters_in_force", "platform_parameters", "rewards_with"]


def from_settings(rewards: RewardSettings) -> GovernedParameters:
    """The [rewards] settings as parameters (the genesis values of a new deployment)."""
    return GovernedParameters(
        owner_bps=rewards.owner_bps,
        contributors_bps=rewards.contributors_bps,
        protocol_bps=bps(rewards.protocol_percent),
        contributor_cap_bps=bps(rewards.contributor_cap_percent),
        platform_fee=rewards.platform_fee_wei,
        training_price_per_token=rewards.training_price_wei,
    )


def parameters_in_force(ledger: Ledger | None, rewards: RewardSettings, block: int | None = None) -> GovernedParameters:
    """The governed parameters at `block` (default: the latest block); the settings' when `ledger` is None or has no
    governance contracts. Chain errors propagate (hub.ledger.errors): the caller decides whether to fall back."""
    governance = ledger.governance if ledger is not None else None
    if governance is None:
        return from_settings(rewards)
    at = ledger.w3.eth.block_number if block is None else block
    parameters, _ = governance.parameters.parameters_at(at)
    return parameters


def rewards_with(rewards: RewardSettings, parameters: GovernedParameters) -> RewardSettings:
    """`rewards` with the fee split, cap, platform fee and training price replaced by `parameters`."""
    percent = lambda value: Decimal(value) / 100  # noqa: E731 - basis points to the settings' percent
    return rewards.model_copy(
        update={
            "owner_percent": percent(parameters.owner_bps),
            "contributors_percent": percent(parameters.contributors_bps),
            "protocol_percent": percent(parameters.protocol_bps),
            "contributor_cap_percent": percent(parameters.contributor_cap_bps),
            "platform_fee": wei_to_open(parameters.platform_fee),
            "training_price": wei_to_open(parameters.training_price_per_token),
        }
    )


def platform_parameters(runtime: PlatformRuntime) -> GovernedParameters:
    """The parameters in force now for the platform service: on chain once its ledger is up, else the settings'.

    E.g. the training price a ModelFactory run is charged: `platform_parameters(runtime).training_price_per_token`."""
    deployment = runtime.extras.get("ledger")
    return parameters_in_force(deployment.ledger if deployment is not None else None, runtime.settings.rewards)
