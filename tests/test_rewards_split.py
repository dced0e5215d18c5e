"""The fee math: settings validation, exactness to the smallest unit, the cap, and never paying more than the fee."""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import pytest
from eth_utils import to_checksum_address
from pydantic import ValidationError

from hub.rewards.config import RewardSettings
from hub.rewards.money import BPS, WEI, bps, open_to_wei, wei_to_open
from hub.rewards.split import SplitError, capped_shares, inference_fee, normalize_shares, split_fee

A, B, C, D = (to_checksum_address("0x" + digit * 40) for digit in "abcd")


ADDRESSES = [to_checksum_address(f"0x{i + 1:040x}") for i in range(16)]


def addr(i: int) -> str:
    return ADDRESSES[i]


# Settings and money --------------------------------------------------------------------------------------------
def test_split_percentages_must_add_up_to_exactly_100() -> None:
    with pytest.raises(ValidationError, match=r"add up to exactly 100%: owner_percent 50 \+ contributors_percent 40 "):
        RewardSettings(owner_percent="50", contributors_percent="40", protocol_percent="5")
    with pytest.raises(ValidationError, match="more decimals than basis points"):
        RewardSettings(owner_percent="50.005", contributors_percent="39.995", protocol_percent="10")
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        RewardSettings(owner_percent="-10", contributors_percent="100", protocol_percent="10")
    ok = RewardSettings(owner_percent="62.5", contributors_percent="27.5", protocol_percent="10")
    assert (ok.owner_bps, ok.contributors_bps) == (6250, 2750)


def test_settings_amounts_are_exact() -> None:
    settings = RewardSettings(platform_fee="0.000000000000000001", contributor_cap_percent="33.33")
    assert settings.platform_fee_wei == 1 and settings.contributor_cap == Fraction(3333, 10_000)
    with pytest.raises(ValidationError, match="more decimals than OPEN's 18 decimals"):
        RewardSettings(platform_fee="0.0000000000000000001")
    with pytest.raises(ValidationError, match="not an Ethereum address"):
        RewardSettings(treasury="0x1234")
    with pytest.raises(ValidationError, match="extra"):
        RewardSettings(owner_pct=50)
    assert RewardSettings(treasury=A.lower()).treasury == A


def test_money_conversions_refuse_floats_and_extra_digits() -> None:
    assert open_to_wei("0.5") == WEI // 2 and open_to_wei(3) == 3 * WEI and open_to_wei(Decimal("1e-18")) == 1
    assert wei_to_open(1) == Decimal("1e-18") and wei_to_open(12 * WEI + 5) == Decimal("12.000000000000000005")
    with pytest.raises(TypeError, match="never a float"):
        open_to_wei(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="more decimals"):
        open_to_wei("1e-19")
    with pytest.raises(ValueError, match="negative"):
        open_to_wei("-1")
    with pytest.raises(ValueError, match="finite"):
        open_to_wei("NaN")
    assert bps("12.5") == 1250 and bps(100) == BPS


# The fee ----------------------------------------------------------------------------------------------------------
def test_fee_formula_rounds_the_token_price_down_once() -> None:
    # 1500 × 333 / 1000 = 499.5 → 499, plus the platform fee
    assert inference_fee(1500, 0, 333, 999, 7) == 499 + 7
    # separate prices: (10 × 150 + 3 × 1000) / 1000 = 4.5 → 4: one rounding over the sum, not one per part
    assert inference_fee(10, 3, 150, 1000, 0) == 4
    assert inference_fee(0, 0, 10**18, 10**18, 0) == 0
    assert inference_fee(2000, 1000, open_to_wei("0.5"), open_to_wei("1.5"), 1) == open_to_wei("2.5") + 1
    for bad in (-1, True, 1.0):
        with pytest.raises(SplitError, match="prompt_tokens must be a non-negative integer"):
            inference_fee(bad, 0, 1, 1, 0)  # type: ignore[arg-type]


# Shares and the cap -----------------------------------------------------------------------------------------------
def test_cap_redistributes_the_excess_pro_rata_over_several_rounds() -> None:
    assert capped_shares({A: Fraction(8), B: Fraction(1), C: Fraction(1)}, Fraction(1, 2)) == {
        A: Fraction(1, 2),
        B: Fraction(1, 4),
        C: Fraction(1, 4),
    }
    # 0.6/0.3/0.1 under a 0.4 cap: A capped, then B (0.45 after A's excess), C takes the rest: 0.4/0.4/0.2
    shares = capped_shares({A: Fraction(6), B: Fraction(3), C: Fraction(1)}, Fraction(2, 5))
    assert shares == {A: Fraction(2, 5), B: Fraction(2, 5), C: Fraction(1, 5)}
    # everyone capped: the rest stays unassigned (the unattributed pool)
    assert capped_shares({A: Fraction(1)}, Fraction(1, 2)) == {A: Fraction(1, 2)}
    assert capped_shares({}, Fraction(1, 2)) == {}


def test_split_with_cap_empty_shares_and_unattributed_to_owner_or_protocol() -> None:
    split = split_fee(1000, {A: 1}, owner_bps=5000, contributors_bps=4000, contributor_cap=Fraction(1, 2))
    assert (split.owner, split.contributors, split.unattributed, split.protocol) == (500, {A: 200}, 200, 100)
    empty = split_fee(1001, {}, owner_bps=5000, contributors_bps=4000, contributor_cap=Fraction(1))
    # owner floor(500.5) = 500, pool floor(400.4) = 400 (all unattributed), protocol 1001 - 900 = 101 (with the dust)
    assert (empty.owner, empty.contributors, empty.unattributed, empty.protocol) == (500, {}, 400, 101)


def test_weights_are_normalised_exactly_and_checked() -> None:
    # lower-case keys are checksummed, negative and zero weights dropped, a float is taken exactly
    assert normalize_shares({D.lower(): "0.25", B: -3, C: 0, A.lower(): 0.5}) == {A: Fraction(1, 2), D: Fraction(1, 4)}
    assert list(normalize_shares({D: 1, A: 1})) == [A, D]
    with pytest.raises(SplitError, match="not an Ethereum address"):
        normalize_shares({"alice": 1})
    with pytest.raises(SplitError, match="appears twice"):
        normalize_shares({A: 1, A.lower(): 2})
    for bad in (float("nan"), float("inf"), "abc", True, None):
        with pytest.raises(SplitError, match="finite number|must be a number"):
            normalize_shares({A: bad})  # type: ignore[dict-item]


def random_weight(rng: random.Random) -> object:
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randrange(-5, 10**6)
    if kind == 1:
        return rng.random() * 10 ** rng.randrange(-8, 8) * (-1 if rng.random() < 0.1 else 1)
    if kind == 2:
        return Decimal(rng.randrange(0, 10**9)).scaleb(-rng.randrange(0, 12))
    if kind == 3:
        return Fraction(rng.randrange(0, 1000), rng.randrange(1, 1000))
    return str(Decimal(rng.randrange(0, 10**6)).scaleb(-3))


def test_random_splits_are_exact_to_the_smallest_unit_and_never_exceed_the_fee() -> None:
    rng = random.Random(20240611)
    for case in range(1500):
        owner_bps = rng.randrange(BPS + 1)
        contributors_bps = rng.randrange(BPS - owner_bps + 1)
        cap = Fraction(rng.randrange(1, BPS + 1), BPS)
        fee = rng.choice([0, 1, 7, rng.randrange(10**6), rng.randrange(10**30)])
        shares = {addr(i): random_weight(rng) for i in range(rng.randrange(0, 14))}
        split = split_fee(fee, shares, owner_bps=owner_bps, contributors_bps=contributors_bps, contributor_cap=cap)
        parts = [split.owner, split.protocol, split.unattributed, *split.contributors.values()]
        assert sum(parts) == fee and min(parts, default=0) >= 0, case
        pool = fee * contributors_bps // BPS
        assert split.owner == fee * owner_bps // BPS and split.contributors_total + split.unattributed == pool
        assert all(amount <= pool * cap for amount in split.contributors.values()), case
        exact = capped_shares(normalize_shares(shares), cap)
        assert sum(exact.values()) <= 1 and all(share <= cap for share in exact.values())
        # each amount is its exact share rounded down: the unattributed pool is the unassigned share plus < 1 unit
        # of dust per contributor
        assert split.contributors == {a: pool * s.numerator // s.denominator for a, s in exact.items()}
        assert split.unattributed - pool * (1 - sum(exact.values(), Fraction(0))) < len(exact) + 1
        # shuffling the input changes nothing
        shuffled = dict(rng.sample(list(shares.items()), len(shares)))
        assert split == split_fee(
            fee, shuffled, owner_bps=owner_bps, contributors_bps=contributors_bps, contributor_cap=cap
        )


def test_uncapped_shares_stay_proportional_to_the_weights() -> None:
    rng = random.Random(7)
    for _ in range(300):
        weights = normalize_shares({addr(i): rng.randrange(0, 100) for i in range(rng.randrange(1, 10))})
        cap = Fraction(rng.randrange(1, 101), 100)
        shares = capped_shares(weights, cap)
        free = [a for a in shares if shares[a] < cap]
        ratios = {shares[a] / weights[a] for a in free}
        assert len(ratios) <= 1  # one common factor for every uncapped contributor
        if free:  # someone below the cap: nothing is left unassigned
            assert sum(shares.values()) == 1


def test_a_flood_of_weight_cannot_take_more_than_the_cap() -> None:
    split = split_fee(10**18, {A: 10**30, B: 1}, owner_bps=5000, contributors_bps=4000, contributor_cap=Fraction(1, 2))
    pool = 4 * 10**17
    assert split.contributors[A] == pool // 2
    assert split.contributors_total + split.unattributed == pool and split.check() is split
