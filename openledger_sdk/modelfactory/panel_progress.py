"""Training events → the fine-tune panel's widgets (status, progress bar, chart), and the evaluation table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from openledger_sdk.modelfactory.panel_chart import render_loss_chart

if TYPE_CHECKING:
    from openledger_sdk.modelfactory.widgets import FinetunePanel

CHART_INTERVAL = 0.5  # seconds between chart redraws while training (the PNG is re-sent each time)


class PanelCallback:
    """Training events → widget updates (runs in the training thread)."""

    def __init__(self, panel: FinetunePanel) -> None:
        self.panel = panel
        self.total: int | None = None
        self._last_draw = 0.0

    def on_phase(self, phase: str) -> None:
        self.panel._status(f"{phase}…")

    def on_train_begin(self, info: dict[str, Any]) -> None:
        self.total = info["total_steps"]
        bar = self.panel.progress
        bar.max, bar.value = max(self.total, 1), 0
        bar.description = f"0/{self.total}"
        self.panel.eta.value = ""
        self.panel._status(
            f"training {info['train_rows']} rows ({info['eval_rows']} held out) on {info['device']}, "
            f"{info['trainable_params']:,} LoRA parameters, {self.total} steps"
        )

    def on_step(self, info: Any) -> None:
        panel = self.panel
        panel.loss_points.append((info.step, info.loss))
        panel.progress.value = info.step
        panel.progress.description = f"{info.step}/{info.total_steps}"
        panel.eta.value = eta_text(info.elapsed, info.step, info.total_steps)
        now = time.monotonic()
        if now - self._last_draw >= CHART_INTERVAL or info.step == info.total_steps:
            self._last_draw = now
            panel.chart.value = render_loss_chart(panel.loss_points, self.total)

    def on_index_progress(self, done: int, total: int) -> None:
        self.panel._status(f"attribution index: {done}/{total} examples")


def eta_text(elapsed: float, step: int, total: int) -> str:
    """Time left for the remaining steps at the pace so far (the first step's warm-up included, so it errs long)."""
    if step <= 0 or step >= total:
        return ""
    left = elapsed / step * (total - step)
    return f"about {duration_text(left)} left"


def duration_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def eval_table(model: Any) -> str:
    ev = model.manifest.get("eval")
    losses = model.metrics["epoch_losses"]
    head = f"<b>epoch losses:</b> {', '.join(f'{x:.4f}' for x in losses) or '-'}"
    if not ev:
        return head + "<br><i>no held-out evaluation (eval split 0, or the run was stopped)</i>"
    return (
        head + f"<table style='margin-top:4px'><tr><th></th><th>loss</th><th>perplexity</th></tr>"
        f"<tr><td>base model</td><td>{ev['loss_before']:.4f}</td><td>{ev['perplexity_before']:.2f}</td></tr>"
        f"<tr><td>fine-tuned</td><td>{ev['loss_after']:.4f}</td><td>{ev['perplexity_after']:.2f}</td></tr>"
        f"</table><small>{ev['rows']} held-out rows, {ev['tokens']} response tokens</small>"
    )
