"""The fee of one inference and its split, in integer base units, exact to the smallest unit.

    fee = floor((tokens_in × price_in_per_1k + tokens_out × price_out_per_1k) / 1000) + platform_fee
    owner        = floor(fee × owner_bps / 10000)
    contributors = floor(fee × contributors_bps / 10000)          (the contributors' pool)
    protocol     = fee − owner − contributors                     (its percentage plus the split's dust)
    contributor i gets floor(pool × s_i), where s_i is i's weight share after the cap (water-filling: shares above the
    cap are set to the cap and the excess is shared pro rata among the uncapped, until none is above it)
    unattributed = pool − Σ contributor amounts                    (no attribution, capped excess, rounding dust)

Rounding is always down, once per amount, with the remainder going to a named bucket, so
owner + Σ contributors + protocol + unattributed == fee exactly, and no part can exceed the fee.
Shares are exact fractions (a float weight is converted exactly, never rounded), so the result is deterministic.
It lives in the SDK so that anyone can recompute a record's split from its attribution document and the governed
parameters read from the chain (`ol.attribution.verify_on_chain`); the platform meters with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Protocol

from eth_utils import is_address, to_checksum_address

BPS = 10_000  # basis points per 100%

Weight = int | float | Decimal | Fraction | str


class SplitError(ValueError):
    """Bad input to the fee math; the message says which value and why."""


def _non_negative_int(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SplitError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def inference_fee(
    prompt_tokens: int, completion_tokens: int, price_in_per_1k: int, price_out_per_1k: int, platform_fee: int
) -> int:
    """The fee in base units: the token price rounded down once (in the payer's favour), plus the platform fee."""
    prompt_tokens = _non_negative_int(prompt_tokens, "prompt_tokens")
    completion_tokens = _non_negative_int(completion_tokens, "completion_tokens")
    price_in = _non_negative_int(price_in_per_1k, "price_in_per_1k")
    price_out = _non_negative_int(price_out_per_1k, "price_out_per_1k")
    platform_fee = _non_negative_int(platform_fee, "platform_fee")
    return (prompt_tokens * price_in + completion_tokens * price_out) // 1000 + platform_fee


def _weight(value: Weight, account: str) -> Fraction:
    if isinstance(value, bool):
        raise SplitError(f"weight of {account} must be a number, got {value!r}")
    try:
        if isinstance(value, str):
            value = Decimal(value)
        weight = Fraction(value)  # exact for int, float, Decimal and Fraction
    except (ValueError, TypeError, ArithmeticError):
        raise SplitError(f"weight of {account} must be a finite number, got {value!r}") from None
    return max(weight, Fraction(0))  # negative influence earns nothing (and takes nothing from others)


def normalize_shares(shares: Mapping[str, Weight]) -> dict[str, Fraction]:
    """Checksummed address → exact non-negative weight, zero weights dropped, sorted by address."""
    weights: dict[str, Fraction] = {}
    for account, value in shares.items():
        if not isinstance(account, str) or not is_address(account):
            raise SplitError(f"contributor {account!r} is not an Ethereum address")
        address = to_checksum_address(account)
        if address in weights:
            raise SplitError(f"contributor {address} appears twice (differently cased)")
        weights[address] = _weight(value, address)
    return {address: weights[address] for address in sorted(weights, key=str.lower) if weights[address] > 0}


def capped_shares(weights: Mapping[str, Fraction], cap: Fraction) -> dict[str, Fraction]:
    """Each account's exact share of the pool: proportional to its weight, at most `cap`, the excess of capped
    accounts shared pro rata among the others. The shares add up to 1, or to less when everyone is capped."""
    if not 0 < cap <= 1:
        raise SplitError(f"the contributor cap must be in (0, 1], got {cap}")
    shares: dict[str, Fraction] = {}
    open_accounts = {account: weight for account, weight in weights.items() if weight > 0}
    budget = Fraction(1)
    while open_accounts:
        total = sum(open_accounts.values())
        over = [account for account, weight in open_accounts.items() if budget * weight / total > cap]
        if not over:
            shares.update({account: budget * weight / total for account, weight in open_accounts.items()})
            break
        for account in over:
            shares[account] = cap
            budget -= cap
            del open_accounts[account]
    return {account: shares[account] for account in sorted(shares, key=str.lower)}


@dataclass(frozen=True)
class FeeSplit:
    """Where one fee goes, in base units; the parts always add up to `fee`."""

    fee: int
    owner: int
    protocol: int
    unattributed: int
    contributors: dict[str, int] = field(default_factory=dict)  # address → amount (may be 0 for tiny fees)

    @property
    def contributors_total(self) -> int:
        return sum(self.contributors.values())

    def check(self) -> FeeSplit:
        """Raise unless every part is non-negative and the parts add up to the fee (never more is paid out)."""
        parts = [self.owner, self.protocol, self.unattributed, *self.contributors.values()]
        if any(part < 0 for part in parts) or sum(parts) != self.fee:
            raise SplitError(f"fee split does not add up: {parts} for a fee of {self.fee}")
        return self


def split_fee(
    fee: int,
    shares: Mapping[str, Weight],
    *,
    owner_bps: int,
    contributors_bps: int,
    contributor_cap: Fraction,
) -> FeeSplit:
    """Split `fee` between the model owner, the contributors (by `shares`, capped) and the protocol."""
    fee = _non_negative_int(fee, "fee")
    owner_bps = _non_negative_int(owner_bps, "owner_bps")
    contributors_bps = _non_negative_int(contributors_bps, "contributors_bps")
    if owner_bps + contributors_bps > BPS:
        raise SplitError(f"owner and contributors together take {owner_bps + contributors_bps} of {BPS} bps")
    owner = fee * owner_bps // BPS
    pool = fee * contributors_bps // BPS
    exact = capped_shares(normalize_shares(shares), contributor_cap)
    contributors = {account: pool * share.numerator // share.denominator for account, share in exact.items()}
    unattributed = pool - sum(contributors.values())
    return FeeSplit(fee, owner, fee - owner - pool, unattributed, contributors).check()


class SplitTerms(Protocol):
    """What a split needs from the rules in force: the [rewards] settings and the governed parameters both have it."""

    @property
    def owner_bps(self) -> int: ...
    @property
    def contributors_bps(self) -> int: ...
    @property
    def contributor_cap(self) -> Fraction: ...


def split_fee_under(fee: int, shares: Mapping[str, Weight], terms: SplitTerms) -> FeeSplit:
    """`split_fee` with the owner share, contributors' share and cap of `terms`."""
    return split_fee(
        fee,
        shares,
        owner_bps=terms.owner_bps,
        contributors_bps=terms.contributors_bps,
        contributor_cap=terms.contributor_cap,
    )
