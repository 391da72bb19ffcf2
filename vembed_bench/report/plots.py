"""PNG plots for the leaderboard pages (matplotlib, no pyplot, no global state).

Figures are made with :class:`matplotlib.figure.Figure` and the Agg canvas,
so importing this module never changes the user's matplotlib backend, and
each plot runs inside ``matplotlib.style.context("default")`` so a user's
matplotlibrc cannot change the pictures. PNG metadata (which records the
matplotlib version) is dropped: the same data and library versions give the
same bytes. Pages only *link* to the files, so the Markdown never depends on
the PNG bytes.

Plots: Recall@K (or Hit@K) curves per task, main score against embedding
dimension for Matryoshka results, and the training loss of a run.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from vembed_bench.report.files import write_bytes

__all__ = [
    "group_matryoshka",
    "loss_curve",
    "matplotlib_available",
    "matryoshka_curve",
    "recall_curves",
]

_RC = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.family": "DejaVu Sans",  # ships with matplotlib: no dependence on system fonts
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "vembed-bench",
    "path.simplify": False,
}


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


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return write_bytes(path, buffer.getvalue())


def _curve_family(main_metric: str) -> str:
    family = main_metric.split("@")[0]
    return family if family in ("recall", "hit") else "recall"


def recall_curves(
    title: str,
    main_metric: str,
    systems: Sequence[tuple[str, dict[str, float]]],
    path: Path,
) -> Path | None:
    """``family@K`` against K, one line per ``(label, scores)``; ``None`` below 2 K values.

    The family is the main metric's when that is ``recall`` or ``hit`` (image
    tasks rank by hit@K, the SOP "Recall@K"), else ``recall``.
    """
    family = _curve_family(main_metric)
    pattern = re.compile(rf"{re.escape(family)}@(\d+)")
    ks = sorted(
        {
            int(m.group(1))
            for _, scores in systems
            for name in scores
            if (m := pattern.fullmatch(name))
        }
    )
    if len(ks) < 2:
        return None
    with _figure() as figure:
        ax = figure.add_subplot()
        for label, scores in systems:
            points = [(k, 100 * scores[f"{family}@{k}"]) for k in ks if f"{family}@{k}" in scores]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("K")
        ax.set_ylabel(f"{family}@K (×100)")
        ax.set_title(title)
        ax.legend(fontsize=8)
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
    with _figure() as figure:
        ax = figure.add_subplot()
        for label in sorted(curves):
            points = curves[label]
            ax.plot([d for d, _ in points], [100 * s for _, s in points], marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.minorticks_off()
        ax.set_xlabel("embedding dimension")
        ax.set_ylabel(f"{main_metric} (×100)")
        ax.set_title(title)
        ax.legend(fontsize=8)
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
