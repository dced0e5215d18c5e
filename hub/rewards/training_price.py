"""The one place the price of fine-tuning is read: OPEN base units per trained token.

It is the price in force on the governed ProtocolParameters contract (hub.governance.parameters), or the
`[rewards] training_price` setting where no governance is deployed. Every caller goes through here."""

from __future__ import annotations

from fastapi import HTTPException

from hub.governance.parameters import platform_parameters
from hub.platform.runtime import PlatformRuntime


def training_price_per_token(runtime: PlatformRuntime) -> int:
    """OPEN base units (10**-18 OPEN) that one trained token costs now. A chain that cannot be read is a 503:
    charging the genesis setting instead could undercut a price the holders voted up."""
    try:
        return platform_parameters(runtime).training_price_per_token
    except Exception as err:  # noqa: BLE001 - any chain failure: nothing is held, the user may retry
        why = f"cannot read the training price in force on the chain now ({type(err).__name__}); nothing was held"
        raise HTTPException(503, why) from None
