"""Input rules shared by the services: text without control/bidi characters, amounts in whole base units, prices
bounded. The same rules end to end (through the hub) are in tests/test_hardening_e2e.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hub.datanets.spec import DatanetSpec, MembersSpec, Review
from hub.keys.faucet import FaucetRefusedError, to_wei
from hub.models.errors import ModelError
from hub.models.pricing import parse_price

HOSTILE = ["nul\x00here", "bell\x07", "\x1b[31mred\x1b[0m", "abc\u202etxt.exe", "isolate\u2066x\u2069", "del\x7f"]


@pytest.mark.parametrize("text", HOSTILE)
def test_datanet_text_fields_refuse_control_and_bidi_characters(text: str) -> None:
    with pytest.raises(ValidationError, match="control or bidi-override character"):
        DatanetSpec(name="safe-name", summary=text)
    with pytest.raises(ValidationError, match="control or bidi-override character"):
        DatanetSpec(name="safe-name", description=text)
    with pytest.raises(ValidationError, match="control or bidi-override character"):
        Review(reason=text)


def test_plain_and_multiline_text_is_kept() -> None:
    spec = DatanetSpec(name="safe-name", summary="Ünïcode — fine ✓", description="line one\n\tline two")
    assert spec.summary == "Ünïcode — fine ✓" and spec.description == "line one\n\tline two"
    with pytest.raises(ValidationError):
        DatanetSpec(name="safe-name", summary="two\nlines")  # a one-line field
    with pytest.raises(ValidationError):
        MembersSpec(members=["bob\u202e"])


@pytest.mark.parametrize(
    "amount", ["1_000", "1e3", "-1", "NaN", "Infinity", "0x10", " ", "1.5.2", "0.0000000000000000001"]
)
def test_faucet_amounts_are_plain_decimals_of_whole_base_units(amount: str) -> None:
    with pytest.raises(FaucetRefusedError):
        to_wei(amount, "OPEN", 10**9)


def test_faucet_amount_bounds() -> None:
    assert to_wei("12.5", "OPEN", 10**9) == 12_500_000_000_000_000_000
    assert to_wei("0.000000000000000001", "OPEN", 10**9) == 1
    assert to_wei("0", "ETH", 10**6) == 0
    with pytest.raises(FaucetRefusedError, match="positive"):
        to_wei("0.0", "OPEN", 10**9, positive=True)
    with pytest.raises(FaucetRefusedError, match="at most"):
        to_wei("1000000001", "OPEN", 10**9)


def test_model_prices_are_bounded() -> None:
    assert parse_price("0.25") == 25 * 10**16
    assert parse_price("1000000") == 10**24
    for price in ("1" + "0" * 39, "1000000.000000000000000001", "1e30"):
        with pytest.raises(ModelError, match="at most"):
            parse_price(price)
