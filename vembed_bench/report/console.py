"""Terminal summaries of results, rendered with rich."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from vembed_bench.data.cards import TaskCard
    from vembed_bench.evaluation.runner import Outcome, ResultSet
    from vembed_bench.evaluation.suites import SuiteResult
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
    settings = f"  ·  {result.settings_key}" if result.settings_key else ""
    title = escape(f"{result.task} [{result.split}]  ·  {result.model}  ·  "
                   f"{info['n_queries']} queries × {info['n_corpus']} docs  ·  dim {result.embedding_dim}{settings}")
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
    from vembed_bench.search.recall import recall_summary

    timings = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in result.timings.items())
    search = result.search_info
    recall = recall_summary(search, result.main_metric)
    console.print(f"main score {result.main_metric} = [bold]{100 * result.main_score:.2f}[/]  "
                  f"(scores ×100; search: {escape(str(search['backend']))}/{escape(str(search['index']))}"
                  f"{'' if search.get('candidate_depth') is None else ' depth ' + str(search['candidate_depth'])}"
                  f"{'' if recall is None else ' (' + recall + ')'}; "
                  f"cache hits {result.cache.get('hits', 0)}/{result.cache.get('hits', 0) + result.cache.get('misses', 0)})")
    console.print(f"timings: {timings}", style="dim")
    skipped = result.task_info.get("skipped_queries_without_relevant")
    if skipped:
        console.print(f"skipped {skipped} queries with no relevant documents", style="yellow")
    _print_reference(result, console)
    if path:
        console.print(f"result file: {escape(str(path))}")


def _print_reference(result: Any, console: Console) -> None:
    from vembed_bench.report.references import reference_lines

    for line in reference_lines(getattr(result, "reference", None) or {}):
        style = "red" if line.endswith(": differs") else None
        console.print(escape(line), style=style, highlight=False)


def print_suite(suite: "SuiteResult", console: Console | None = None) -> None:
    """Print the combined score (members are printed by the caller) and the summary table."""
    console = console or Console()
    parts = ", ".join(f"{key} {100 * value:.2f}" for key, value in suite.scores.items() if "/" in key)
    scale = 1.0 if suite.aggregate == "rsum" and suite.main_metric == "rsum" else 100.0
    console.print(f"[bold]{escape(suite.suite)}[/] {suite.main_metric} = [bold]{scale * suite.main_score:.2f}[/]"
                  + (f"  ({escape(parts)})" if parts else ""))
    if suite.summary:
        table = Table(title=escape(f"{suite.suite}: {suite.summary['name']} summary (x100)"))
        for label in suite.summary["columns"].values():
            table.add_column(label, justify="right")
        table.add_row(*(f"{100 * suite.summary['scores'][key]:.2f}" if key in suite.summary["scores"] else "-"
                        for key in suite.summary["columns"]))
        console.print(table)
    _print_reference(suite, console)


def dims_table(results: Sequence["Result"]) -> Table:
    """Matryoshka views of one model on one task: one row per dimension, main metric first (x100)."""
    scores = results[0].scores
    preferred = [m for m in ("ndcg@10", "recall@10", "mrr@10", "map@10", "recall@100") if m in scores]
    metrics = list(dict.fromkeys([results[0].main_metric, *preferred]))
    if len(metrics) < 3:  # cards without K=10: the first other metrics
        metrics = list(dict.fromkeys([*metrics, *scores]))[:5]
    table = Table(title=escape(f"{results[0].task} [{results[0].split}]  ·  {results[0].model}  ·  "
                               "Matryoshka dimensions (x100)"), title_justify="left")
    table.add_column("dim", justify="right")
    for metric in metrics:
        table.add_column(metric, justify="right")
    for result in sorted(results, key=lambda r: -r.embedding_dim):
        table.add_row(str(result.embedding_dim), *(f"{100 * result.scores[m]:.2f}" for m in metrics))
    return table


def outcome_line(outcome: "Outcome") -> str:
    """One line per pair of a sweep: status, model, task, main score or the error."""
    what = f"{outcome.model} × {outcome.task}" + (f" (dim {outcome.dim})" if outcome.dim else "")
    if outcome.status == "failed":
        return f"[red]failed[/]   {escape(what)}: {escape(outcome.error or '')}"
    if outcome.status == "planned":
        where = f" -> {outcome.path}" if outcome.path else ""
        return f"planned  {escape(what)}: {escape(outcome.note)}{escape(where)}"
    result = outcome.result
    scale = 1.0 if getattr(result, "aggregate", None) == "rsum" and result.main_metric == "rsum" else 100.0
    score = f"{result.main_metric} {scale * result.main_score:.2f}"
    status = "[green]done[/]    " if outcome.status == "computed" else "[cyan]reused[/]  "
    return f"{status} {escape(what)}: {score}" + (f"  [dim]{escape(str(outcome.path))}[/]" if outcome.path else "")


def sweep_table(result_set: "ResultSet") -> Table:
    """Models × tasks, main score of each pair (x100; Rsum as is), "failed" where it failed."""
    table = Table(title="main scores (x100)", title_justify="left")
    table.add_column("model")
    for task in result_set.tasks:
        table.add_column(escape(task), justify="right")
    metrics = {o.task: o.result.main_metric for o in result_set if o.result is not None}
    failed = {(o.model, o.task) for o in result_set.failed}
    for model, row in result_set.table().items():
        cells = []
        for task in result_set.tasks:
            value = row.get(task)
            if value is None:
                cells.append("[red]failed[/]" if (model, task) in failed else "-")
            else:
                cells.append(f"{value:.2f}" if metrics.get(task) == "rsum" else f"{100 * value:.2f}")
        table.add_row(escape(model), *cells)
    table.caption = escape(", ".join(f"{task}: {metric}" for task, metric in metrics.items()))
    return table


def tasks_table(cards: list["TaskCard"]) -> Table:
    table = Table(title="Task cards")
    for column in ("name", "modality", "size", "main metric", "splits", "description"):
        table.add_column(column, overflow="fold", no_wrap=column in ("name", "main metric"))
    for card in cards:
        size = " × ".join(f"{v:,} {k}" for k, v in card.size.items()) or "?"
        table.add_row(*(escape(cell) for cell in (card.name, card.modality, size, card.main_metric,
                                                  ",".join(card.splits), card.description.split("\n")[0])))
    return table


def benchmarks_table(benchmarks: list[Any]) -> Table:
    table = Table(title="Benchmark cards (eval --benchmark NAME)")
    for column in ("name", "tasks", "description"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for card in benchmarks:
        table.add_row(escape(card.name), escape(", ".join(card.tasks)), escape(card.description.split("\n")[0]))
    return table
