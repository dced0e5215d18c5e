"""Training progress hooks: what `finetune()` reports while it runs (phases, steps, epochs, index progress)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openledger_sdk.modelfactory.trained import TrainedModel


@dataclass(frozen=True)
class StepInfo:
    """One optimizer step: `loss` is the token-weighted mean response loss of the step's examples."""

    step: int
    total_steps: int
    epoch: int  # 1-based
    loss: float
    lr: float
    tokens: int  # tokens processed so far (padding excluded)
    elapsed: float  # seconds since the first step started


class Callback:
    """Hooks into training; override what you need. Called from the thread that runs `finetune()`."""

    def on_phase(self, phase: str) -> None:
        """ "loading data", "loading model", "training", "paying for training" (on a hub), "evaluating",
        "indexing", "saving", "done", "stopped"."""

    def on_train_begin(self, info: dict[str, Any]) -> None:
        """`info`: total_steps, epochs, train_rows, eval_rows, device, precision, trainable_params."""

    def on_step(self, info: StepInfo) -> None: ...

    def on_epoch_end(self, epoch: int, loss: float) -> None: ...

    def on_index_progress(self, done: int, total: int) -> None: ...

    def on_train_end(self, model: TrainedModel) -> None: ...


def emit(callbacks: Sequence[Any], event: str, *args: Any) -> None:
    for callback in callbacks:
        method = getattr(callback, event, None)
        if method is not None:
            method(*args)
        elif callable(callback):  # a plain function receives (event, *args)
            callback(event, *args)
