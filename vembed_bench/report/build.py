"""Write the leaderboard folder: Markdown pages, CSV and LaTeX tables, plots, the HTML report.

Layout of ``out/``::

    README.md                models × tasks on main scores, suite averages, task list,
                             training runs, results kept apart, metric definitions
    overview.csv, .tex       the models × tasks table (CSV: raw scores; LaTeX: as shown)
    tasks/<task>-<split>.md  one leaderboard per task split, with .csv and .tex beside it
    runs/<run>.md            one page per training run, with .csv and .tex beside it
    plots/*.png, *.svg       Recall@K curves with 95% bands (their points in *.recall.csv),
                             Matryoshka curves, loss curves
    report.html              everything above on one self-contained page

Running it again on unchanged result files rewrites identical bytes, on this
machine or another one with the same library versions: nothing depends on the
clock, on file-system order or on dictionary order, every number is written
at a fixed precision (also the HTML's sort keys), resampling is seeded, and
plots carry no date or version. Files of earlier runs that are no longer
produced are left in place.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

from vembed_bench.errors import VembedError
from vembed_bench.report.collect import collect
from vembed_bench.report.document import Block, Details, Image, Link, Para, Table, to_markdown
from vembed_bench.report.files import write_text
from vembed_bench.report.leaderboard import (
    Board,
    Pages,
    build_boards,
    compute_deltas,
    definition_blocks,
    matryoshka_dim,
    overview_blocks,
    overview_data,
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


def _plot_blocks(png: Path, alt: str, points: Path | None = None) -> list[Block]:
    """The PNG on the page, and links to its SVG (and to the plotted numbers)."""
    from vembed_bench.report.plots import svg_path

    links: tuple = ("Vector image: ", Link("SVG", svg_path(png)))
    if points is not None:
        links += (" · points and bands: ", Link("CSV", points))
    return [Image(png, alt), Para((*links, "."))]


def _plots(boards: Sequence[Board], pages: Pages, runs) -> list[Path]:
    from vembed_bench.report import plots
    from vembed_bench.report.curves import curve_family, curve_ks, recall_curve
    from vembed_bench.report.exports import curves_csv

    written = []
    folder = pages.out / "plots"
    for board in boards:
        blocks: list[Block] = []
        title = f"{board.task} · {board.split}"
        family = curve_family(board.main_metric)
        ks = curve_ks(family, [item.result for item in board.entries])
        curves = [
            recall_curve(
                pages.label(item.result),
                item.result,
                family,
                ks,
                seed=pages.seed,
                n_resamples=pages.n_resamples,
            )
            for item in board.entries  # duplicates are already out: one line per distinct result
        ] if len(ks) >= 2 else []
        curves = [c for c in curves if c is not None]
        path = plots.recall_curves(title, family, curves, folder / f"{board.slug}.recall.png")
        if path:
            points = write_text(folder / f"{board.slug}.recall.csv", curves_csv(family, curves))
            blocks += _plot_blocks(path, f"{title}: {family}@K curves with 95% bootstrap bands", points)
            written += [path, plots.svg_path(path), points]
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
            blocks += _plot_blocks(path, f"{title}: {board.main_metric} against embedding dimension")
            written += [path, plots.svg_path(path)]
        pages.task_plots[board.slug] = blocks
    for run in runs:
        run_slug = pages.run_slugs[run.folder]
        path = plots.loss_curve(
            f"{run.name}: training loss", run.log, folder / f"run-{run_slug}.loss.png"
        )
        pages.run_plots[run_slug] = _plot_blocks(path, f"{run.name}: training loss") if path else []
        written += [path, plots.svg_path(path)] if path else []
    return written


def _tables(blocks: Sequence[Block], prefix: str) -> list[Table]:
    return [b for b in blocks if isinstance(b, Table) and (b.table_id or "").startswith(prefix)]


def _export_board(board: Board, blocks: Sequence[Block], pages: Pages) -> list[Path]:
    from vembed_bench.report.exports import board_csv, latex_document, latex_table

    page = pages.task_path(board)
    csv_path = page.with_suffix(".csv")
    main = board.main_metric
    note = (
        f"Scores x100, ranked by {main}; Δ vs rank 1 with its paired 95% bootstrap interval and "
        f"sign-flip permutation p ({pages.n_resamples:,} resamples, seed {pages.seed})."
    )
    headline = _tables(blocks, f"board-{board.slug}")[0]
    full = [t for block in blocks if isinstance(block, Details) for t in _tables(block.blocks, "")]
    parts = [latex_table(headline, caption=f"{board.task} ({board.split}). {note}",
                         label=f"tab:{board.slug}")]
    parts += [
        latex_table(t, caption=f"{board.task} ({board.split}): every metric, x100.",
                    label=f"tab:{board.slug}-all")
        for t in full
    ]
    return [
        write_text(csv_path, board_csv(board, pages, csv_path)),
        write_text(page.with_suffix(".tex"), latex_document(parts, f"{board.task} ({board.split})")),
    ]


def _export_run(run, blocks: Sequence[Block], pages: Pages) -> list[Path]:
    from vembed_bench.report.exports import latex_document, latex_table, run_csv

    page = pages.run_path(run)
    run_slug = pages.run_slugs[run.folder]
    comparable = [pair for pair in run.pairs if not _problem(pair)]
    tables = _tables(blocks, f"run-{run_slug}-")
    parts = [
        latex_table(
            table,
            caption=f"{run.name}: {base.result.task} ({base.result.split}), zero-shot → fine-tuned, "
            f"x100; Δ with its paired 95% bootstrap interval and permutation p.",
            label=f"tab:run-{run_slug}-{number}",
        )
        for number, (table, (base, _)) in enumerate(zip(tables, comparable), start=1)
    ]
    return [
        write_text(page.with_suffix(".csv"), run_csv(run, pages)),
        write_text(page.with_suffix(".tex"), latex_document(parts, f"training run {run.name}")),
    ]


def _problem(pair) -> str | None:
    from vembed_bench.report.comparison import comparability_problem

    return comparability_problem(pair[0].result, pair[1].result)


def write_leaderboards(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    suites: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    plots: bool = True,
    html: bool = True,
    exports: bool = True,
) -> list[Path]:
    """Build the leaderboard folder ``out`` from result folders/files ``paths``; return its files.

    ``suites`` maps a task name to the suites it counts towards; when given it
    replaces the task cards' ``suite`` keys (unnamed tasks then belong to none).
    Plots need matplotlib; without it they are skipped with a warning and the
    pages link none. ``exports`` writes each page's tables as CSV and LaTeX beside it.
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
    pages = Pages(out=out, labels=labels, seed=seed, n_resamples=n_resamples, exports=exports)
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

    data = overview_data(boards, pages) if boards else None
    overview = overview_blocks(boards, collection.runs, pages, data)
    definitions = definition_blocks(boards, collection.runs)
    written.append(
        write_text(pages.overview_path(), to_markdown([*overview, *definitions], pages.out))
    )
    if exports and data is not None:
        from vembed_bench.report.exports import latex_document, latex_table, overview_csv

        table = _tables(overview, "overview-table")[0]
        caption = "Main score of each task x100 (metric in the column header); bold: best in column."
        written += [
            write_text(pages.overview_export(".csv"), overview_csv(data)),
            write_text(
                pages.overview_export(".tex"),
                latex_document([latex_table(table, caption=caption, label="tab:overview")],
                               "leaderboard overview"),
            ),
        ]
    sections = [overview]
    for board in boards:
        blocks = task_blocks(board, pages)
        path = pages.task_path(board)
        written.append(write_text(path, to_markdown(blocks, path.parent)))
        if exports:
            written += _export_board(board, blocks, pages)
        sections.append(blocks)
    for run in collection.runs:
        blocks = run_blocks(run, pages)
        path = pages.run_path(run)
        written.append(write_text(path, to_markdown(blocks, path.parent)))
        if exports:
            written += _export_run(run, blocks, pages)
        sections.append(blocks)
    if definitions:
        sections.append(definitions)
    if html:
        from vembed_bench.report.html import render_html

        nav = [("Overview", "overview")] + [(f"{b.task}/{b.split}", task_anchor(b)) for b in boards]
        nav += [(f"run {r.name}", run_anchor(pages.run_slugs[r.folder])) for r in collection.runs]
        page = out / "report.html"
        written.append(write_text(page, render_html(sections, page, nav=nav)))
    return sorted(written)
