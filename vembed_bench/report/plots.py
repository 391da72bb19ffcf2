"""Plots for the leaderboard pages, as PNG and SVG (matplotlib, no pyplot, no global state).

Figures are made with :class:`matplotlib.figure.Figure` and the Agg canvas,
so importing this module never changes the user's matplotlib backend, and
each plot runs inside ``matplotlib.style.context("default")`` so a user's
matplotlibrc cannot change the pictures. Every plot is written twice, as
``<name>.png`` and ``<name>.svg``, with fixed metadata (no software version,
no date, a fixed ``svg.hashsalt`` for the SVG ids) and the fonts that ship
with matplotlib: the same data and library versions give the same bytes on
every machine. Pages only *link* to the files, so the Markdown never depends
on the image bytes.

Plots: Recall@K (or Hit@K) curves per task with 95% bootstrap bands, main
score against embedding dimension for Matryoshka results, and the training
loss of a run. Legends sit outside the axes, so they hide no curve, and every
line has its own colour, line style and marker, so near-identical curves stay
distinguishable.
"""

from __future__ import annotations

import io
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from vembed_bench.report.files import write_bytes

if TYPE_CHECKING:
    from vembed_bench.report.curves import Curve

__all__ = [
    "group_matryoshka",
    "line_style",
    "loss_curve",
    "matplotlib_available",
    "matryoshka_curve",
    "recall_curves",
    "svg_path",
]

_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",  # ships with matplotlib: no dependence on system fonts
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "vembed-bench",
    "svg.fonttype": "path",  # glyphs as paths: the SVG needs no installed font
    "path.simplify": False,
}
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}
_LINE_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def _figure(width: float = 6.4, height: float = 4.0) -> Iterator:
    import matplotlib
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"), matplotlib.rc_context(_RC):
        figure = Figure(figsize=(width, height))
        FigureCanvasAgg(figure)
        yield figure


def svg_path(png: Path) -> Path:
    """The SVG written beside a plot's PNG."""
    return Path(png).with_suffix(".svg")


def _save(figure, path: Path) -> Path:
    """Write ``path`` (PNG) and its SVG twin; the legend outside the axes is kept in the frame."""
    for fmt, target in (("png", Path(path)), ("svg", svg_path(path))):
        buffer = io.BytesIO()
        figure.savefig(
            buffer, format=fmt, metadata=_METADATA[fmt], bbox_inches="tight", pad_inches=0.08
        )
        write_bytes(target, buffer.getvalue())
    return Path(path)


def line_style(index: int) -> dict[str, str]:
    """Colour, line style and marker of the ``index``-th line: no two of the first 40 lines
    share all three (10 colours, 4 line styles, 8 markers)."""
    return {
        "color": f"C{index % 10}",
        "linestyle": _LINE_STYLES[index % len(_LINE_STYLES)],
        "marker": _MARKERS[index % len(_MARKERS)],
    }


def _legend_outside(ax) -> None:
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8, frameon=False
    )


def recall_curves(title: str, family: str, curves: Sequence["Curve"], path: Path) -> Path | None:
    """``family@K`` against K, one line per curve with its 95% band; ``None`` below 2 K values.

    ``curves`` should hold one curve per distinct result (duplicates removed by the caller).
    """
    ks = sorted({k for curve in curves for k in curve.ks})
    if len(ks) < 2:
        return None
    with _figure(7.6, 4.0) as figure:
        ax = figure.add_subplot()
        for index, curve in enumerate(curves):
            style = line_style(index)
            xs = list(curve.ks)
            ax.fill_between(
                xs,
                [100 * v for v in curve.low],
                [100 * v for v in curve.high],
                color=style["color"],
                alpha=0.12,
                linewidth=0,
            )
            ax.plot(
                xs,
                [100 * v for v in curve.values],
                label=curve.label,
                linewidth=1.3,
                markersize=4,
                **style,
            )
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K")
        ax.set_ylabel(f"{family}@K (×100), 95% bootstrap band")
        ax.set_title(title)
        _legend_outside(ax)
        return _save(figure, path)


def matryoshka_curve(
    title: str,
    main_metric: str,
    curves: dict[str, list[tuple[int, float]]],
    path: Path,
) -> Path | None:
    """Main score against embedding dimension, one line per model; ``None`` if no 2-point curve."""
    curves = {label: sorted(points) for label, points in curves.items() if len(points) >= 2}
    if not curves:
        return None
    dims = sorted({d for points in curves.values() for d, _ in points})
    with _figure(7.6, 4.0) as figure:
        ax = figure.add_subplot()
        for index, label in enumerate(sorted(curves)):
            points = curves[label]
            ax.plot(
                [d for d, _ in points],
                [100 * s for _, s in points],
                label=label,
                linewidth=1.3,
                markersize=4,
                **line_style(index),
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("embedding dimension")
        ax.set_ylabel(f"{main_metric} (×100)")
        ax.set_title(title)
        _legend_outside(ax)
        return _save(figure, path)


def loss_curve(title: str, rows: Sequence[dict], path: Path) -> Path | None:
    """Training loss against step from ``train_log.jsonl`` rows; ``None`` when there are none."""
    points = sorted((float(r["step"]), float(r["loss"])) for r in rows)
    if not points:
        return None
    with _figure(6.4, 3.2) as figure:
        ax = figure.add_subplot()
        ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        return _save(figure, path)


def group_matryoshka(
    items: Sequence[tuple[str, str, int | None, int, float]],
) -> dict[str, list[tuple[int, float]]]:
    """``(model key, curve label, matryoshka dim, embedding dim, score)`` -> label -> points.

    A model (key: name and weights fingerprint) has a curve when at least one
    of its results is truncated; its untruncated result is the point at the
    full ``embedding_dim``.
    """
    by_model: dict[str, list[tuple[str, int | None, int, float]]] = defaultdict(list)
    for key, label, mdim, dim, score in items:
        by_model[key].append((label, mdim, dim, score))
    curves: dict[str, list[tuple[int, float]]] = {}
    for _, points in sorted(by_model.items()):
        if all(mdim is None for _, mdim, _, _ in points):
            continue
        label = base = min(p[0] for p in points)
        number = 2
        while label in curves:  # two models with one name: keep both curves
            label, number = f"{base} #{number}", number + 1
        curves[label] = sorted(
            {(mdim if mdim is not None else dim): score for _, mdim, dim, score in points}.items()
        )
    return curves
