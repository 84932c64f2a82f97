"""Rate-distortion plots (PNG) of quality against bpp, with published curves for context.

Figures are drawn with matplotlib's object API (no pyplot, no display needed). The axes zoom on
the curves under test: reference curves are clipped to that bpp range, so an anchor that reaches
4 bpp does not squash a model that lives below 0.5 bpp.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from rdvq.atomic import atomic_write_bytes
from rdvq.rd_curves import METRICS, RDCurve

_MARKERS = "osD^v<>ph*"


def _finite(pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]


def plot_rd(
    path: str | os.PathLike,
    curves: list[RDCurve],
    metric: str,
    *,
    references: list[RDCurve] = (),
    title: str | None = None,
    annotate: bool = True,
) -> bool:
    """Draw ``metric`` against bpp for ``curves`` (solid, with markers) over ``references`` (thin,
    dashed) and write the PNG. Returns False, writing nothing, when no curve has the metric."""
    from matplotlib.figure import Figure  # imported here: matplotlib costs a second at start-up

    spec = METRICS[metric]
    tested = [(c, _finite(sorted(zip(c.results["bpp"], c.values(metric) or [])))) for c in curves]
    tested = [(c, pairs) for c, pairs in tested if pairs]
    if not tested:
        return False
    figure = Figure(figsize=(7.5, 5.2), dpi=120)
    axes = figure.add_subplot()
    x_min, x_max = 0.0, 1.3 * max(x for _, pairs in tested for x, _ in pairs)
    visible_y = [y for _, pairs in tested for _, y in pairs]
    for index, reference in enumerate(references):
        pairs = _finite(sorted(zip(reference.results["bpp"], reference.values(metric) or [])))
        if not pairs:
            continue
        axes.plot(*zip(*pairs), linestyle="--", linewidth=1.1, alpha=0.75, marker=".", markersize=4,
                  color=f"C{(index + len(tested)) % 10}", label=reference.name)
        visible_y += [y for x, y in pairs if x_min <= x <= x_max]
    for index, (curve, pairs) in enumerate(tested):
        axes.plot(*zip(*pairs), linestyle="-", linewidth=2.0, marker=_MARKERS[index % len(_MARKERS)],
                  markersize=6, color=f"C{index % 10}", label=curve.name, zorder=3)
        labels = [point.get("label") for point in curve.points] if annotate else []
        if labels and len(labels) == len(curve) and any(labels):
            order = sorted(range(len(curve)), key=lambda i: curve.results["bpp"][i])
            values = curve.values(metric)
            for i in order:
                if labels[i] and labels[i] != curve.name and math.isfinite(values[i]):
                    axes.annotate(labels[i], (curve.results["bpp"][i], values[i]), textcoords="offset points",
                                  xytext=(5, -11), fontsize=7, color=f"C{index % 10}")
    y_low, y_high = min(visible_y), max(visible_y)
    y_pad = max(0.08 * (y_high - y_low), 1e-3 if spec.higher_is_better else 1e-4)
    axes.set_xlim(x_min, x_max)
    axes.set_ylim(y_low - y_pad, y_high + y_pad)
    axes.set_xlabel("bits per pixel")
    axes.set_ylabel(spec.label + ("" if spec.higher_is_better else "  (lower is better)"))
    if title:
        axes.set_title(title, fontsize=11)
    axes.grid(True, alpha=0.3)
    handles, names = axes.get_legend_handles_labels()
    first = len(handles) - len(tested)  # the curves under test lead the legend
    axes.legend(handles[first:] + handles[:first], names[first:] + names[:first], fontsize=8,
                loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return True
