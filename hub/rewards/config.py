"""Reward settings: the fee per inference, the split, the per-contributor cap, epochs, the treasury, the record mode.

The platform reads them from the hub settings' `[rewards]` section when it has one (keys as in `RewardSettings`,
e.g. `[rewards] owner_percent = "50"` or `OPENLEDGER_REWARDS__EPOCH_SECONDS=600`), else uses the defaults.
With governance deployed, the fee split, cap, platform fee and training price here are only the genesis values of
the on-chain ProtocolParameters: after that, votes change them (hub.governance.parameters).
Amounts of OPEN and percentages are Decimals (write them as strings in TOML: a TOML float is binary); everything is
turned into exact integers (base units, basis points, fractions) before any money is computed.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Literal

from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hub.rewards.money import BPS, bps, open_to_wei


class RewardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Charged on every inference on top of the token price, in OPEN (18 decimals at most).
    platform_fee: Decimal = Field(Decimal("0.001"), ge=0)
    # How every fee is split; at most 2 decimals each (basis points) and exactly 100 together.
    owner_percent: Decimal = Field(Decimal(50), ge=0, le=100)
    contributors_percent: Decimal = Field(Decimal(40), ge=0, le=100)
    protocol_percent: Decimal = Field(Decimal(10), ge=0, le=100)
    # No contributor gets more than this share of one inference's contributors' pool; the excess is shared
    # pro rata among the others, and what nobody may take goes to the unattributed pool. 100 turns the cap off.
    contributor_cap_percent: Decimal = Field(Decimal(50), gt=0, le=100)
    # Who receives the unattributed pool (no attribution, capped excess, rounding dust of the contributors' pool).
    unattributed_to: Literal["protocol", "owner"] = "protocol"
    # Settlement closes an epoch this long after the previous one (or after its oldest record).
    epoch_seconds: int = Field(3600, ge=1)
    # Receives the protocol's share; None: the platform's relay operator.
    treasury: str | None = None
    # "epoch": records only in SQL, committed as one Merkle root per epoch (cheap). "per_record": also one
    # AttributionLedger.recordInference transaction per inference (each record on chain at once, ~52k gas each).
    record_mode: Literal["epoch", "per_record"] = "epoch"
    # A priced request's fee reservation lapses after this long if its process died before releasing it.
    reservation_seconds: int = Field(900, ge=10)
    # Fine-tuning (ModelFactory) costs this much OPEN per trained token (18 decimals at most), paid to the protocol.
    # Once governance is deployed this is only the genesis value: ProtocolParameters holds the one in force.
    training_price: Decimal = Field(Decimal("0.00001"), ge=0)
    # A training run that never reports its end is charged its whole reservation after this long (crash or not:
    # the platform cannot tell a dead kernel from one that withholds its report).
    training_reservation_seconds: int = Field(86400, ge=60)

    @field_validator("platform_fee", "training_price")
    @classmethod
    def _whole_base_units(cls, value: Decimal) -> Decimal:
        open_to_wei(value, "platform_fee / training_price")  # raises on more than 18 decimals
        return value

    @field_validator("owner_percent", "contributors_percent", "protocol_percent", "contributor_cap_percent")
    @classmethod
    def _basis_points(cls, value: Decimal) -> Decimal:
        bps(value)  # raises on more than 2 decimals
        return value

    @field_validator("treasury")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not is_address(value):
            raise ValueError(f"treasury {value!r} is not an Ethereum address")
        return to_checksum_address(value)

    @model_validator(mode="after")
    def _split_adds_up(self) -> RewardSettings:
        total = self.owner_percent + self.contributors_percent + self.protocol_percent
        if total != 100:
            raise ValueError(
                f"the fee split must add up to exactly 100%: owner_percent {self.owner_percent} + "
                f"contributors_percent {self.contributors_percent} + protocol_percent {self.protocol_percent} "
                f"= {total}"
            )
        return self

    # Exact integer forms used by the fee math -------------------------------------------------------------------
    @property
    def platform_fee_wei(self) -> int:
        return open_to_wei(self.platform_fee, "platform_fee")

    @property
    def training_price_wei(self) -> int:
        return open_to_wei(self.training_price, "training_price")

    @property
    def owner_bps(self) -> int:
        return bps(self.owner_percent)

    @property
    def contributors_bps(self) -> int:
        return bps(self.contributors_percent)

    @property
    def contributor_cap(self) -> Fraction:
        return Fraction(bps(self.contributor_cap_percent), BPS)
