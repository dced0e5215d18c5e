"""Prices in OPEN as decimal text on the wire, integer base units (18 decimals, like wei) everywhere else.

Base units are kept as decimal text in SQL: uint256 does not fit SQL integers (9.3 OPEN is already over 2^63).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, localcontext

from hub.models.errors import ModelError

DECIMALS = 18
UNIT = 10**DECIMALS
MAX_PRICE_OPEN = 10**6  # per 1k tokens: far above any sane price, far below amounts that overflow fee math


def parse_price(text: str) -> int:
    """ "0.25" → 250000000000000000; 422 for anything that is not a finite, non-negative number of OPEN."""
    try:
        price = Decimal(text.strip()) if len(text) <= 100 else None
    except (InvalidOperation, AttributeError):
        price = None
    if price is None:
        raise ModelError(422, f"price_per_1k_tokens must be a decimal number of OPEN, got {str(text)[:40]!r}")
    if not price.is_finite() or price < 0:
        raise ModelError(422, f"price_per_1k_tokens must be a finite number >= 0 OPEN, got {str(text)[:40]!r}")
    if price > MAX_PRICE_OPEN:
        raise ModelError(422, f"price_per_1k_tokens must be at most {MAX_PRICE_OPEN} OPEN, got {str(text)[:40]!r}")
    with localcontext(prec=200):  # exact: the default 28 digits would round 11 integer + 18 decimal digits
        units = price * UNIT
        exact = units == units.to_integral_value() and (price == 0 or price.adjusted() >= -DECIMALS)
    if not exact:
        raise ModelError(422, f"price_per_1k_tokens has more than {DECIMALS} decimal places: {str(text)[:60]!r}")
    return int(units)


def format_price(units: int) -> str:
    """250000000000000000 → "0.25" (no exponent, no trailing zeros)."""
    whole, frac = divmod(units, UNIT)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0").rstrip(".")


def to_open(units: int) -> Decimal:
    return Decimal(units) / UNIT
