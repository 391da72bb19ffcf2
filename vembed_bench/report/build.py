"""Write the leaderboard folder: Markdown pages, PNG plots and the HTML report.

Layout of ``out/``::

    README.md              models × tasks on main scores, suite averages, task list,
                           training runs, results kept apart
    tasks/<task>-<split>.md  one leaderboard per task split
    runs/<run>.md          one page per training run (comparison tables, loss curve)
    plots/*.png            Recall@K curves, Matryoshka curves, loss curves
    report.html            everything above on one self-contained page

Running it again on unchanged result files rewrites identical bytes: nothing
depends on the clock, on file-system order or on dictionary order, numbers
have fixed formats, and resampling is seeded. Files of earlier runs that are
no longer produced are left in place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from vembed_bench.errors import VembedError
from vembed_bench.report.collect import collect
from vembed_bench.report.document import Image, to_markdown
from vembed_bench.report.files import write_text
from vembed_bench.report.leaderboard import (
    Board,
    Pages,
    build_boards,
    compute_deltas,
    matryoshka_dim,
    overview_blocks,
    run_anchor,
    run_blocks,
    system_labels,
    task_anchor,
    task_blocks,
)
from vembed_bench.report.stats import DEFAULT_RESAMPLES
from vembed_bench.results import slug

log = logging.getLogger(__name__)

__all__ = ["write_leaderboards"]


def _plots(boards: Sequence[Board], pages: Pages, runs) -> list[Path]:
    from vembed_bench.report import plots

    written = []
    folder = pages.out / "plots"
    for board in boards:
        images = []
        title = f"{board.task} · {board.split}"
        systems = [(pages.label(item.result), item.result.scores) for item in board.entries]
        path = plots.recall_curves(
            title, board.main_metric, systems, folder / f"{board.slug}.recall.png"
        )
        if path:
            images.append(Image(path, f"{title}: {path.name.split('.')[-2]}@K curves"))
        items = [
            (
                f"{item.result.model}\x00{item.result.model_info.get('fingerprint', '')}",
                item.result.model,
                matryoshka_dim(item.result),
                item.result.embedding_dim,
                item.result.main_score,
            )
            for item in board.entries
        ]
        path = plots.matryoshka_curve(
            f"{title}: {board.main_metric} vs dimension",
            board.main_metric,
            plots.group_matryoshka(items),
            folder / f"{board.slug}.matryoshka.png",
        )
        if path:
            images.append(Image(path, f"{title}: {board.main_metric} against embedding dimension"))
        pages.task_plots[board.slug] = images
        written += [image.path for image in images]
    for run in runs:
        run_slug = pages.run_slugs[run.folder]
        path = plots.loss_curve(
            f"{run.name}: training loss", run.log, folder / f"run-{run_slug}.loss.png"
        )
        pages.run_plots[run_slug] = [Image(path, f"{run.name}: training loss")] if path else []
        written += [path] if path else []
    return written


def write_leaderboards(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    suites: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    plots: bool = True,
    html: bool = True,
) -> list[Path]:
    """Build the leaderboard folder ``out`` from result folders/files ``paths``; return its files.

    ``suites`` maps a task name to the suites it counts towards; when given it
    replaces the task cards' ``suite`` keys (unnamed tasks then belong to none).
    Plots need matplotlib; without it they are skipped with a warning and the
    pages link none.
    """
    collection = collect(*paths)
    if not collection.results and not collection.runs:
        raise VembedError(f"no result files found under {', '.join(map(str, paths))}")
    out = Path(out).absolute()
    every = {item.path: item.result for item in collection.results}
    for run in collection.runs:
        for pair in run.pairs:
            every.update({item.path: item.result for item in pair})
    labels = system_labels([every[p] for p in sorted(every)])
    boards = build_boards(collection.results, suites, labels=labels)
    for board in boards:
        compute_deltas(board, seed=seed, n_resamples=n_resamples)
    pages = Pages(out=out, labels=labels, seed=seed, n_resamples=n_resamples)
    for run in collection.runs:
        name, n = slug(run.name), 2
        candidate = name
        while candidate in pages.run_slugs.values():
            candidate, n = f"{name}-{n}", n + 1
        pages.run_slugs[run.folder] = candidate

    written: list[Path] = []
    if plots:
        from vembed_bench.report.plots import matplotlib_available

        if matplotlib_available():
            written += _plots(boards, pages, collection.runs)
        else:
            log.warning("matplotlib is not installed: writing the leaderboards without plots")

    overview = overview_blocks(boards, collection.runs, pages)
    written.append(write_text(pages.overview_path(), to_markdown(overview, pages.out)))
    sections = [overview]
    for board in boards:
        blocks = task_blocks(board, pages)
        path = pages.task_path(board)
        written.append(write_text(path, to_markdown(blocks, path.parent)))
        sections.append(blocks)
    for run in collection.runs:
        blocks = run_blocks(run, pages)
        path = pages.run_path(run)
        written.append(write_text(path, to_markdown(blocks, path.parent)))
        sections.append(blocks)
    if html:
        from vembed_bench.report.html import render_html

        nav = [("Overview", "overview")] + [(f"{b.task}/{b.split}", task_anchor(b)) for b in boards]
        nav += [(f"run {r.name}", run_anchor(pages.run_slugs[r.folder])) for r in collection.runs]
        page = out / "report.html"
        written.append(write_text(page, render_html(sections, page, nav=nav)))
    return sorted(written)
