"""Exact money: OPEN amounts in integer base units (18 decimals), percentages in integer basis points.

Floats never touch money: a float like 0.1 is not 1/10, so OPEN amounts come in as Decimal, str or int (whole OPEN)
and percentages as Decimal or str, and are refused if they have more digits than the smallest unit can carry.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from openledger_sdk.ledger.fees import BPS

__all__ = ["BPS", "DECIMALS", "WEI", "bps", "open_to_wei", "wei_to_open"]

DECIMALS = 18
WEI = 10**DECIMALS  # base units per OPEN


def _decimal(value: Decimal | str | int, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"{what} must be a Decimal, str or int (never a float), got {type(value).__name__}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} {value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _exact_int(number: Decimal, scale: int, what: str, unit: str) -> int:
    scaled = number.scaleb(scale)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what} {number} has more decimals than {unit} allow")
    return int(scaled)


def open_to_wei(amount: Decimal | str | int, what: str = "amount") -> int:
    """OPEN (e.g. "0.25" or Decimal("0.25")) to base units, exactly; more than 18 decimals is an error."""
    number = _decimal(amount, what)
    if number < 0:
        raise ValueError(f"{what} must not be negative, got {amount}")
    return _exact_int(number, DECIMALS, what, "OPEN's 18 decimals")


def wei_to_open(wei: int) -> Decimal:
    """Base units to OPEN for display; exact (Decimal arithmetic on an integer and a power of ten)."""
    return Decimal(wei).scaleb(-DECIMALS)


def bps(percent: Decimal | str | int) -> int:
    """A percentage (at most 2 decimals, e.g. "12.5") as integer basis points (1250)."""
    return _exact_int(_decimal(percent, "percentage"), 2, f"percentage {percent}", "basis points (2 decimals)")
