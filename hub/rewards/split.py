"""The fee of one inference and its split: the SDK's exact integer math (openledger_sdk.ledger.fees), which the
platform meters with and anyone verifies with."""

from openledger_sdk.ledger.fees import (
    FeeSplit,
    SplitError,
    Weight,
    capped_shares,
    inference_fee,
    normalize_shares,
    split_fee,
    split_fee_under,
)

__all__ = [
    "FeeSplit",
    "SplitError",
    "Weight",
    "capped_shares",
    "inference_fee",
    "normalize_shares",
    "split_fee",
    "split_fee_under",
]
