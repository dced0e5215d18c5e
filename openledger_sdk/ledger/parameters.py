"""The governed protocol parameters as the chain holds them (ProtocolParameters.Parameters), and their hash.

The platform records them in every epoch and every inference's attribution document; a notebook recomputes the
hash and compares it with `ProtocolParameters.parametersHashAt(block)` and the epoch's committed hash.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak

from openledger_sdk.ledger.fees import BPS

# ProtocolParameters.Parameters: (ownerBps, contributorsBps, protocolBps, contributorCapBps, platformFee,
# trainingPricePerToken); hashParameters = keccak256(abi.encode(parameters)).
PARAMETERS_TYPE = "(uint16,uint16,uint16,uint16,uint256,uint256)"
VALUE_FIELDS = (
    "owner_bps",
    "contributors_bps",
    "protocol_bps",
    "contributor_cap_bps",
    "platform_fee",
    "training_price_per_token",
)


@dataclass(frozen=True)
class GovernedParameters:
    """The fee split and cap in basis points, the platform fee and the training price in OPEN base units, and
    where they were read: `block` on chain (`source="chain"`), or the settings (`block=0`, `source="settings"`,
    before governance is deployed or while the chain is not up)."""

    owner_bps: int
    contributors_bps: int
    protocol_bps: int
    contributor_cap_bps: int
    platform_fee: int
    training_price_per_token: int
    block: int = 0
    source: str = "settings"

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in VALUE_FIELDS)

    @property
    def hash(self) -> str:
        """keccak256(abi.encode(parameters)) as 0x hex: ProtocolParameters.hashParameters."""
        return "0x" + keccak(encode([PARAMETERS_TYPE], [self.values()])).hex()

    @property
    def contributor_cap(self) -> Fraction:
        return Fraction(self.contributor_cap_bps, BPS)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (amounts as decimal strings: JSON numbers lose precision), with the hash."""
        data: dict[str, Any] = {name: getattr(self, name) for name in VALUE_FIELDS[:4]}
        data |= {name: str(getattr(self, name)) for name in VALUE_FIELDS[4:]}
        return data | {"block": self.block, "source": self.source, "hash": self.hash}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GovernedParameters:
        names = [field.name for field in fields(cls)]
        values = {name: data[name] for name in names if name in data}
        for name in VALUE_FIELDS + ("block",):
            values[name] = int(values[name]) if name in values else 0
        return cls(**values)
