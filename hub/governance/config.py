"""Governance settings (`[governance]` in openledger.toml): how long votes take, quorum and proposal threshold.

Times are seconds: the governance token's clock is the block timestamp, so they mean the same on every chain. The
defaults let a class pass a proposal in a few minutes; a production chain wants days (docs/governance.md).
They are deployment-time values: after deployment, only a vote changes them (GovernorSettings setters).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hub.rewards.money import open_to_wei


class GovernanceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # After a proposal is made, this long before voting opens (votes are counted as delegated at that moment).
    voting_delay: int = Field(1, ge=0, le=2**47)
    # How long voting stays open.
    voting_period: int = Field(180, ge=1, le=2**31)
    # Between a passed vote being queued and its execution.
    timelock_delay: int = Field(60, ge=0, le=2**47)
    # Share of all gOPEN (at the proposal's snapshot) that must vote for + abstain for a proposal to pass.
    quorum_percent: int = Field(4, ge=0, le=100)
    # gOPEN votes a proposer needs (whole OPEN, decimals allowed).
    proposal_threshold: Decimal = Field(Decimal(1), ge=0)

    @field_validator("proposal_threshold")
    @classmethod
    def _whole_base_units(cls, value: Decimal) -> Decimal:
        open_to_wei(value, "proposal_threshold")  # raises on more than 18 decimals
        return value

    @property
    def proposal_threshold_wei(self) -> int:
        return open_to_wei(self.proposal_threshold, "proposal_threshold")
