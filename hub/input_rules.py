"""Input rules every service applies to what users type: text without control or bidi-override characters, and
amounts of OPEN/ETH as plain decimals in whole base units.

Text: names, summaries and reasons end up in notebooks, dashboards, terminals and logs. NUL and BEL, ANSI escapes
(ESC) and the bidirectional overrides (U+202A–U+202E, U+2066–U+2069: "Trojan Source") make what is shown differ
from what is stored, so they are refused; multi-line fields may keep newlines and tabs.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

SQL_INT_MAX = 2**63 - 1
# Ids and numbers in URL paths: beyond SQL's 64-bit integers they used to reach the database and fail with 500.
SqlId = Annotated[int, Path(ge=-SQL_INT_MAX, le=SQL_INT_MAX)]
VersionRef = Annotated[str, Path(pattern=r"^(latest|[0-9]{1,18})$", description="a version number or 'latest'")]
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
DECIMALS = 18
_AMOUNT = re.compile(r"^(\d{1,30})(?:\.(\d{1,30}))?$")


def check_text(value: str, field: str = "text", multiline: bool = False) -> str:
    """`value` unchanged, or ValueError naming the first forbidden character and where it is."""
    allowed = "\n\t\r" if multiline else ""
    for index, char in enumerate(value):
        if char in BIDI_CONTROLS or (unicodedata.category(char) == "Cc" and char not in allowed):
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            raise ValueError(
                f"{field} contains a control or bidi-override character ({name}, U+{ord(char):04X}) at position "
                f"{index}: remove it"
            )
    return value


SafeLine = Annotated[str, AfterValidator(lambda value: check_text(value, "this field"))]
SafeText = Annotated[str, AfterValidator(lambda value: check_text(value, "this field", multiline=True))]


def parse_amount(text: str, what: str, maximum: int) -> int:
    """A plain decimal ("12.5") of whole tokens → base units (18 decimals). ValueError for anything else: signs,
    exponents, "1_000", NaN, more than 18 decimals (less than one base unit), or more than `maximum` whole tokens."""
    match = _AMOUNT.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{what} amount must be a plain decimal number like 12.5, got {str(text)[:40]!r}")
    whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
    if len(fraction) > DECIMALS:
        raise ValueError(f"{what} amount {text.strip()} is finer than one base unit (at most {DECIMALS} decimals)")
    if Decimal(whole) > maximum:
        raise ValueError(f"{what} amount must be at most {maximum}, got {text.strip()}")
    return int(whole) * 10**DECIMALS + int(fraction.ljust(DECIMALS, "0") or "0")
