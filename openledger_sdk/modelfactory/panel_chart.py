"""The fine-tune panel's loss chart: a PNG drawn with matplotlib's Agg canvas (thread-safe, no pyplot state)."""

from __future__ import annotations

import io


def render_loss_chart(points: list[tuple[int, float]], total_steps: int | None = None) -> bytes:
    """PNG of the training loss per optimizer step (a thread-safe Figure, not pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 2.6), dpi=90)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if points:
        steps, losses = zip(*points, strict=True)
        axes.plot(steps, losses, marker="o" if len(points) < 40 else None, markersize=3, linewidth=1.4)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    if total_steps:
        axes.set_xlim(0, max(total_steps, 1) + 0.5)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
