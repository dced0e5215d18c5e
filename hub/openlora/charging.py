"""What the OpenLoRA API needs from whoever prices and records its requests: the `Metering` protocol (the hub's is
`hub.openlora.metering.PlatformMetering`: fee reservations and reward records), and `FlatMetering` for a
stand-alone server outside the hub."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

PriceTable = Callable[[str], float]  # model id -> OPEN per 1k tokens (prompt + completion)


@dataclass(frozen=True)
class FinishedInference:
    """What metering records of one finished request (its attribution included)."""

    payer: str
    request_id: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    shares: dict[str, float] | None = None  # contributor address → weight; None: unattributed
    top_examples: list[dict[str, Any]] = field(default_factory=list)


class Metering(Protocol):
    """Prices and records inferences; the hub service's is `hub.openlora.metering.PlatformMetering`."""

    def price_per_1k(self, model: str) -> float: ...

    def authorize(
        self, payer: str, model: str, prompt_tokens: int, max_completion_tokens: int, request_id: str
    ) -> None:
        """Reserve what the request may cost, or raise an EngineError (e.g. InsufficientFundsError, 429)."""
        ...

    def release(self, request_id: str) -> None:
        """Give back the reservation of a request that failed or was cancelled (no-op once recorded)."""
        ...

    def record(self, inference: FinishedInference) -> dict:
        """Record a finished inference with its attribution; return at least its `price` in OPEN."""
        ...


class FlatMetering:
    """A fixed price table and no records: for a stand-alone server outside the hub."""

    def __init__(self, price_per_1k: PriceTable) -> None:
        self.price_per_1k = price_per_1k

    def authorize(
        self, payer: str, model: str, prompt_tokens: int, max_completion_tokens: int, request_id: str
    ) -> None:
        return None  # no wallets outside the hub

    def release(self, request_id: str) -> None:
        return None

    def record(self, inference: FinishedInference) -> dict:
        tokens = inference.prompt_tokens + inference.completion_tokens
        return {"price": tokens / 1000.0 * float(self.price_per_1k(inference.model))}
