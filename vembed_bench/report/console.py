"""Terminal summaries of results, rendered with rich."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from vembed_bench.data.cards import TaskCard
    from vembed_bench.results import Result


def metric_grid(scores: dict[str, float]) -> tuple[list[str], list[int], dict[tuple[str, int], float]]:
    """Split ``name@k`` scores into metric families × k values."""
    grid: dict[tuple[str, int], float] = {}
    families: dict[str, None] = {}
    ks: set[int] = set()
    for name, value in scores.items():
        match = re.fullmatch(r"(.+)@(\d+)", name)
        if match:
            family, k = match.group(1), int(match.group(2))
            families.setdefault(family)
            ks.add(k)
            grid[(family, k)] = value
    return list(families), sorted(ks), grid


def result_table(result: "Result") -> Table:
    """Metrics as rows, k values as columns, the main metric highlighted."""
    families, ks, grid = metric_grid(result.scores)
    info = result.task_info
    title = (f"{result.task} [{result.split}]  ·  {result.model}  ·  "
             f"{info['n_queries']} queries × {info['n_corpus']} docs  ·  dim {result.embedding_dim}")
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for k in ks:
        table.add_column(f"@{k}", justify="right")
    for family in families:
        cells = []
        for k in ks:
            value = grid.get((family, k))
            text = "" if value is None else f"{100 * value:.2f}"
            if f"{family}@{k}" == result.main_metric:
                text = f"[bold green]{text}[/]"
            cells.append(text)
        table.add_row(family, *cells)
    return table


def print_result(result: "Result", path: str | None = None, console: Console | None = None) -> None:
    console = console or Console()
    console.print(result_table(result))
    timings = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    search = result.search_info
    console.print(f"main score {result.main_metric} = [bold]{100 * result.main_score:.2f}[/]  "
                  f"(scores ×100; search: {search['backend']}/{search['index']}"
                  f"{'' if search.get('candidate_depth') is None else ' depth ' + str(search['candidate_depth'])}; "
                  f"cache hits {result.cache.get('hits', 0)}/{result.cache.get('hits', 0) + result.cache.get('misses', 0)})")
    console.print(f"timings: {timings}", style="dim")
    skipped = result.task_info.get("skipped_queries_without_relevant")
    if skipped:
        console.print(f"skipped {skipped} queries with no relevant documents", style="yellow")
    if path:
        console.print(f"result file: {path}")


def tasks_table(cards: list["TaskCard"]) -> Table:
    table = Table(title="Task cards")
    for column in ("name", "modality", "size", "main metric", "splits", "description"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "main metric"))
    for card in cards:
        size = " × ".join(f"{v:,} {k}" for k, v in card.size.items()) or "?"
        table.add_row(card.name, card.modality, size, card.main_metric, ",".join(card.splits),
                      card.description.split("\n")[0])
    return table
