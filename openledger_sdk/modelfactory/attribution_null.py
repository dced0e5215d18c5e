"""The null threshold of an adapter's attribution: what an answer must beat to be attributed, and its calibration."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from openledger_sdk.modelfactory.attribution_query import Attributor

NULL_FILE = "attribution_null.json"
NULL_FORMAT = "openledger-attribution-null/1"
__all__ = ["NULL_FILE", "NullThreshold", "calibrate_null"]


@dataclass(frozen=True)
class NullThreshold:
    """Scores an answer must beat to be attributed (calibrated on answers to unrelated prompts)."""

    gradient_z: float = 3.0  # max_j z_j; the uncalibrated default is a 3-sigma outlier
    span: float = 0.05  # max_j S_j; a span must cover a few percent of the answer
    quantile: float | None = None
    samples: int = 0
    observed: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / NULL_FILE
        path.write_text(json.dumps({"format": NULL_FORMAT, **asdict(self)}, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> NullThreshold | None:
        path = Path(directory) / NULL_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("format", None) != NULL_FORMAT:
            raise ValueError(f"{path} is not an {NULL_FORMAT} file")
        return cls(**data)


def calibrate_null(
    attributor: Attributor,
    unrelated: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    quantile: float = 0.95,
    model: Any = None,
    save: bool = True,
) -> NullThreshold:
    """Set the null thresholds at the `quantile` of max z and max S over answers to unrelated prompts.

    `unrelated`: (prompt_ids, output_ids) pairs — prompts the datanet says nothing about, with the adapter's own
    answers to them. The floors (z ≥ 2, S ≥ 0.02) keep a handful of samples from setting an absurdly low bar. Saved
    as `attribution_null.json` beside the index (when the attributor came from a folder and `save`).
    """
    if not unrelated:
        raise ValueError("calibration needs at least one unrelated (prompt, output) pair")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    max_z, max_s = [], []
    for prompt_ids, output_ids in unrelated:
        stats = attributor.statistics(prompt_ids, output_ids, model)
        max_z.append(float(stats["z"].max()))
        max_s.append(float(stats["span"].max()))
    threshold = NullThreshold(
        gradient_z=max(float(np.quantile(max_z, quantile)), 2.0),
        span=max(float(np.quantile(max_s, quantile)), 0.02),
        quantile=quantile,
        samples=len(unrelated),
        observed={
            "gradient_z": [round(v, 4) for v in np.quantile(max_z, [0.5, 0.9, 0.95, 1.0]).tolist()],
            "span": [round(v, 4) for v in np.quantile(max_s, [0.5, 0.9, 0.95, 1.0]).tolist()],
            "quantiles": [0.5, 0.9, 0.95, 1.0],
        },
    )
    attributor.threshold = threshold
    if save and attributor.directory is not None:
        threshold.save(attributor.directory)
    return threshold
