"""The one place the price of fine-tuning is read: OPEN base units per trained token.

Today it is the `[rewards] training_price` setting; once the governed ProtocolParameters contract exists, this
function reads the price in force from it instead (every caller goes through here)."""

from __future__ import annotations

from hub.platform.runtime import PlatformRuntime


def training_price_per_token(runtime: PlatformRuntime) -> int:
    """OPEN base units (10**-18 OPEN) that one trained token costs now."""
    return runtime.settings.rewards.training_price_wei
