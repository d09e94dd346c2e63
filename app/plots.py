"""Series in, PNG bytes out: the training curves and precision-recall curves a job's plots endpoint serves.

matplotlib is imported inside the functions (Agg canvas, object API, no pyplot state), so importing the app
stays cheap and concurrent requests do not share a figure.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Point = tuple[float, float]
Series = Mapping[str, Sequence[Point]]
"""Named lines, each a sequence of (x, y) points."""

WIDTH_IN, HEIGHT_IN, DPI = 7.0, 4.0, 100


def line_chart(series: Series, title: str, xlabel: str, ylabel: str, *, log_y: bool = False) -> bytes:
    """A PNG with one line per named series (e.g. loss, cls_loss, box_loss against step)."""
    figure, axes = _figure()
    for name, points in series.items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        axes.plot(xs, ys, label=name, marker="." if len(points) < 30 else None)
    if log_y and all(y > 0 for points in series.values() for _, y in points):
        axes.set_yscale("log")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend()
    return _png(figure)


def pr_chart(curves: Series, title: str) -> bytes:
    """A PNG of precision against recall, one curve per class, on the unit square."""
    figure, axes = _figure()
    for name, points in curves.items():
        recall, precision = zip(*points, strict=True) if points else ((), ())
        axes.plot(recall, precision, label=name)
    axes.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    return _png(figure)


def _figure() -> tuple[Figure, Axes]:
    """A new figure on its own Agg canvas, with one set of axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
