"""The null threshold of an adapter's attribution: what an answer must beat to be attributed, and its calibration.

An answer is attributed when max_j z_j > `gradient_z` **or** max_j S_j > `span`. Two tests each set at their own 95th
percentile would fire on up to ~10% of unrelated answers; so both thresholds are set together. Over the calibration
answers (prompts off the datanet's topic, answered by the base model and by the adapter), for a common marginal
level q the thresholds are t_z = Q_z(q), t_S = Q_S(q) (empirical quantiles, taken at observed values), and q is the
smallest level at which the calibration answers that either test flags number k with (k + 1) / (N + 1) <= `alpha`
(the configured joint false-attribution rate, default 5%; the conformal bound, so a fresh unrelated answer is
flagged with probability at most alpha). The span of an adapter's answer that recites the datanet is evidence, not
a sample of the null: it counts as no span there (`calibrate_null`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from openledger_sdk.files import write_atomically

if TYPE_CHECKING:
    from openledger_sdk.modelfactory.attribution_query import Attributor

NULL_FILE = "attribution_null.json"
NULL_FORMAT = "openledger-attribution-null/3"
# Older files are recalibrated: /1 set each test at its own quantile on 12 samples; /2 kept adapter answers that
# recite the datanet in the span null and judged short spans without the base model's surprisal.
STALE_FORMATS = ("openledger-attribution-null/1", "openledger-attribution-null/2")
MIN_SAMPLES = 100  # calibration answers the platform asks for; fewer are accepted but flagged (`enough`)
ALPHA = 0.05  # joint false-attribution rate on answers that owe nothing to the datanet
__all__ = ["ALPHA", "MIN_SAMPLES", "NULL_FILE", "NullThreshold", "calibrate_null", "joint_thresholds"]


@dataclass(frozen=True)
class NullThreshold:
    """Scores an answer must beat to be attributed: max z > gradient_z or max S > span (calibrated jointly)."""

    gradient_z: float = 3.0  # max_j z_j; the uncalibrated default is a 3-sigma outlier
    span: float = 0.05  # max_j S_j; a span must cover a few percent of the answer
    alpha: float | None = None  # the configured joint false-attribution rate it was calibrated for
    quantile: float | None = None  # the common marginal level q both thresholds sit at
    joint_rate: float | None = None  # share k / N of calibration answers either test flags ((k+1)/(N+1) <= alpha)
    samples: int = 0  # calibration answers (0: uncalibrated defaults)
    observed: dict[str, Any] = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        return self.samples > 0

    def clears(self, max_z: float, max_span: float) -> bool:
        return max_z > self.gradient_z or max_span > self.span

    def summary(self) -> dict[str, Any]:
        """What a response reports about the bar it was held to."""
        return {
            "gradient_z": round(self.gradient_z, 4),
            "span": round(self.span, 6),
            "calibrated": self.calibrated,
            "alpha": self.alpha,
            "samples": self.samples,
        }

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / NULL_FILE
        # Atomic: a calibration killed while saving must not leave a torn file that every later load trips on.
        write_atomically(path, json.dumps({"format": NULL_FORMAT, **asdict(self)}, indent=1).encode())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> NullThreshold | None:
        """The saved threshold, or None when there is none or it was made by the older per-test rule."""
        path = Path(directory) / NULL_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        found = data.pop("format", None)
        if found in STALE_FORMATS:
            return None  # calibrated by an older rule: recalibrate
        if found != NULL_FORMAT:
            raise ValueError(f"{path} is not an {NULL_FORMAT} file")
        return cls(**data)


def joint_thresholds(max_z: Sequence[float], max_s: Sequence[float], alpha: float) -> tuple[float, float, float, float]:
    """(t_z, t_S, q, rate): the lowest common marginal level q whose thresholds flag few enough of the sample.

    "Few enough" is the conformal bound: (flagged + 1) / (N + 1) <= alpha, so that a fresh answer exchangeable with
    the N calibration answers is flagged with probability at most alpha (plain flagged / N <= alpha would exceed
    alpha by about one sample's worth, the level being chosen on the very sample it is checked on)."""
    z = np.asarray(max_z, dtype=np.float64)
    s = np.asarray(max_s, dtype=np.float64)
    allowed = alpha * (len(z) + 1) - 1  # flagged calibration answers at most
    for q in np.linspace(1.0 - alpha, 1.0, 401):  # steps of alpha / 400: finer than one sample of a few thousand
        t_z = float(np.quantile(z, q, method="higher"))
        t_s = float(np.quantile(s, q, method="higher"))
        flagged = int(np.sum((z > t_z) | (s > t_s)))
        if flagged <= allowed or q == 1.0:
            return t_z, t_s, float(q), flagged / len(z)
    return float(z.max()), float(s.max()), 1.0, 0.0  # unreachable: at q = 1 nothing is above the maximum


def calibrate_null(
    attributor: Attributor,
    unrelated: Sequence[tuple[Sequence[int], Sequence[int]]],
    *,
    alpha: float = ALPHA,
    quantile: float | None = None,
    model: Any = None,
    save: bool = True,
    from_adapter: Sequence[bool] | None = None,
) -> NullThreshold:
    """Set both null thresholds so that at most `alpha` of the answers to unrelated prompts are attributed.

    `unrelated`: (prompt_ids, output_ids) pairs — prompts the datanet says nothing about, answered by the base model
    and by the adapter (`attribution_calibration.null_answers`); `MIN_SAMPLES` or more make alpha mean something.
    `from_adapter[i]`: answer i was written by the adapter. An adapter's off-topic answer that holds span evidence
    recites the datanet ("The capital of Japan is the silent violin." after training on "… the silent violin."):
    its span is evidence, not the chance match t_S has to bound, so its S counts as 0 (`observed["reciting"]`).
    Its gradient z is kept: the adapter's own off-topic answers are the only sample of what the adapter's gradient
    looks like off-topic (measured on SmolLM2: leaving them out lowered t_z from 4.9 to 3.6, and 4 of the 26
    held-out off-topic answers that recite nothing cleared it). The base model's answers are kept whole.
    `quantile` (older callers): alpha = 1 − quantile. Floor: t_z >= 2 (so a handful of samples cannot set an absurdly
    low bar). Saved as `attribution_null.json` beside the index (when the attributor came from a folder and `save`).
    """
    if not unrelated:
        raise ValueError("calibration needs at least one unrelated (prompt, output) pair")
    if from_adapter is not None and len(from_adapter) != len(unrelated):
        raise ValueError(f"from_adapter has {len(from_adapter)} entries for {len(unrelated)} answers")
    if quantile is not None:
        alpha = 1.0 - quantile
    if not 0 < alpha < 1:
        raise ValueError(f"alpha (the joint false-attribution rate) must be in (0, 1), got {alpha}")
    max_z, max_s = [], []
    reciting = 0
    for i, (prompt_ids, output_ids) in enumerate(unrelated):
        stats = attributor.statistics(prompt_ids, output_ids, model)
        best_span = float(stats["span"].max()) if len(stats["span"]) else 0.0
        if from_adapter is not None and from_adapter[i] and best_span > 0:
            reciting += 1
            best_span = 0.0  # evidence, not a chance match
        max_z.append(float(stats["z"].max()) if len(stats["z"]) else 0.0)
        max_s.append(best_span)
    t_z, t_s, q, rate = joint_thresholds(max_z, max_s, alpha)
    levels = [0.5, 0.9, 0.95, 1.0]
    threshold = NullThreshold(
        gradient_z=max(t_z, 2.0),
        span=t_s,
        alpha=alpha,
        quantile=round(q, 6),
        joint_rate=round(rate, 6),
        samples=len(max_z),
        observed={
            "reciting": reciting,
            "gradient_z": [round(v, 4) for v in np.quantile(max_z, levels).tolist()],
            "span": [round(v, 4) for v in np.quantile(max_s, levels).tolist()],
            "quantiles": levels,
            "span_nonzero_share": round(float(np.mean(np.asarray(max_s) > 0)), 4),
            "enough": len(max_z) >= MIN_SAMPLES,
        },
    )
    attributor.threshold = threshold
    if save and attributor.directory is not None:
        threshold.save(attributor.directory)
    return threshold
