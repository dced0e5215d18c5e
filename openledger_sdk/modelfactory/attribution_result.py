"""What one attribution returns: the credited training rows and the contributors' shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openledger_sdk.modelfactory.attribution_null import NullThreshold

__all__ = ["AttributedExample", "AttributionResult", "normalised_shares"]


@dataclass(frozen=True)
class AttributedExample:
    """One training row in the top-k, with why it was credited."""

    position: int  # row in the index
    row_id: Any
    contributor: str
    datanet: str | None
    version: Any
    score: float  # combined c_i (after near-copy clustering)
    gradient: float  # G_i
    gradient_z: float  # z_i
    span: float  # S_i
    spans: tuple[tuple[int, int], ...] = ()  # (start, length) of the answer's verbatim spans found in this row
    copies: tuple[Any, ...] = ()  # row ids of later near-copies whose credit this row received
    paid: bool = True  # False: in the top-k for explanation, but without evidence of its own (earns nothing)

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_id": self.row_id,
            "contributor": self.contributor,
            "datanet": self.datanet,
            "version": self.version,
            "score": round(self.score, 6),
            "gradient": round(self.gradient, 6),
            "gradient_z": round(self.gradient_z, 4),
            "span": round(self.span, 6),
            "spans": [list(s) for s in self.spans],
            **({"copies": list(self.copies)} if self.copies else {}),
            **({} if self.paid else {"paid": False}),
        }


@dataclass
class AttributionResult:
    """Top examples and contributor shares of one answer; `shares` is empty when `attributed` is False."""

    attributed: bool
    examples: list[AttributedExample]
    shares: dict[str, float]  # contributor → share, non-negative, summing to 1 (empty: unattributed)
    max_gradient_z: float
    max_span: float
    threshold: NullThreshold
    timings: dict[str, float] = field(default_factory=dict)  # seconds: backward, matvec, spans, total

    @property
    def top(self) -> AttributedExample | None:
        return self.examples[0] if self.examples else None

    def top_examples(self, limit: int = 10) -> list[dict[str, Any]]:
        """JSON objects for `record_inference(top_examples=...)` and the API response."""
        return [example.to_dict() for example in self.examples[:limit]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "attributed": self.attributed,
            # unattributed: nothing cleared the null threshold (uncalibrated: the threshold's `calibrated` is false)
            "status": "attributed" if self.attributed else "unattributed",
            "shares": self.shares,
            "top_examples": self.top_examples(),
            "max_gradient_z": round(self.max_gradient_z, 4),
            "max_span": round(self.max_span, 6),
            "threshold": self.threshold.summary(),
        }


def normalised_shares(credit: dict[str, float]) -> dict[str, float]:
    """Per-contributor credit (non-negative) normalised to sum to 1; empty when nobody has any."""
    total = sum(v for v in credit.values() if v > 0)
    return {who: v / total for who, v in sorted(credit.items()) if v > 0} if total > 0 else {}
