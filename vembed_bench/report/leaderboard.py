"""Leaderboards: group results into comparable columns, rank them, lay out the pages.

A *board* is one task split. Its results are split by
:func:`~vembed_bench.report.comparison.comparability_key`: the largest group of
full-split results (ties: the smallest key) is the leaderboard. Results on a
``--limit`` query sample are never ranked beside full splits: they are listed
apart, labelled ``query sample: limit N, seed S``; every other result that
cannot share the column is listed apart with the reason.

A *system* is a model with its settings (``model_info`` except the device) and
search index; each system has one row per board. Results that answer the same
question (same weights, settings and data; see :mod:`.systems`) are shown
once: the others, including a Matryoshka view that keeps every dimension, are
listed as duplicates of the row (the untruncated result, then the shallowest
path, then the first by name is used; never the best one). Rows of one model
that differ in a setting carry it in their label (``model [max_length 128]``).

Task tables show the main metric and a few K values of its family; the full
table is folded below. Metric definitions are written once, at the end of the
overview (and of the HTML page), and every task page links to them.

Everything is sorted explicitly (scores, then labels, then paths), so the
same result files always give the same pages.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.report.collect import ResultFile, TrainingRun
from vembed_bench.report.comparison import (
    comparability_key,
    comparability_problem,
    comparison_blocks,
    delta_cells,
    method_note,
)
from vembed_bench.report.curves import curve_family
from vembed_bench.report.document import (
    Block,
    Bold,
    Cell,
    Code,
    Details,
    Heading,
    Image,
    Link,
    Para,
    Table,
    fmt_score,
)
from vembed_bench.report.ranks import cross_task_rank_blocks, rank_blocks
from vembed_bench.report.stats import (
    DEFAULT_RESAMPLES,
    PairedDelta,
    align_queries,
    paired_bootstrap_ci,
    paired_deltas,
    paired_permutation_pvalue,
)
from vembed_bench.report.systems import (
    MATRYOSHKA_KEY,
    full_widths,
    is_full_split,
    matryoshka_dim,
    result_identity,
    sample_label,
    settings_suffixes,
)
from vembed_bench.results import Result, slug

__all__ = [
    "APPROXIMATE_MARK",
    "MATRYOSHKA_KEY",
    "METRIC_DEFINITIONS_ANCHOR",
    "Board",
    "Overview",
    "Pages",
    "board_ranks",
    "build_boards",
    "compute_deltas",
    "definition_blocks",
    "headline_metrics",
    "is_approximate",
    "matryoshka_dim",
    "metric_order",
    "overview_blocks",
    "overview_data",
    "run_blocks",
    "suites_of",
    "system_key",
    "system_labels",
    "task_blocks",
]

APPROXIMATE_MARK = "≈"
"""Appended to the label of a result searched with an approximate index (explained in a footnote)."""
METRIC_DEFINITIONS_ANCHOR = "metric-definitions"
"""Id of the metric definitions section (GitHub's id for the heading "Metric definitions")."""
_HEADLINE_KS = (1, 10, 100)

# Not part of a system's identity: where it ran, and what one run counted (e.g. images
# loaded per task, which differ between the tasks of one model).
_VOLATILE_MODEL_KEYS = ("device", "encode_stats")


@dataclass
class Board:
    """One task split: its ranked comparable results and those listed apart."""

    task: str
    split: str
    slug: str
    entries: list[ResultFile]
    """Comparable results, one per system, best main score first."""
    apart: list[tuple[ResultFile, str]] = field(default_factory=list)
    """Results of this task split that cannot share the column, with the reason."""
    samples: list[ResultFile] = field(default_factory=list)
    """Results on a ``--limit`` query sample, never ranked beside full splits."""
    duplicates: list[tuple[ResultFile, ResultFile]] = field(default_factory=list)
    """(duplicate, used) pairs: further results of the same weights, settings and data as a row."""
    suites: list[str] = field(default_factory=list)
    deltas: dict[Path, PairedDelta | str] = field(default_factory=dict)
    """Result path -> paired delta to rank 1 on the main metric (or why there is none)."""

    @property
    def reference(self) -> Result:
        return self.entries[0].result

    @property
    def main_metric(self) -> str:
        return self.reference.main_metric


def is_approximate(result: Result) -> bool:
    """Whether the result's rankings come from an approximate index rather than exact search."""
    return result.search_info.get("exact") is False


def system_key(result: Result) -> str:
    """Identity of a model-with-settings across tasks (same key = same row)."""
    info = {k: v for k, v in result.model_info.items() if k not in _VOLATILE_MODEL_KEYS}
    search = {
        "index": result.search_info.get("index"),
        "exact": result.search_info.get("exact", True),
    }
    return json.dumps([result.model, info, search], sort_keys=True, default=str)


def _base_label(result: Result, settings: str = "") -> str:
    label = result.model
    dim = matryoshka_dim(result)
    if dim is not None:
        label += f" (dim {dim})"
    if settings:
        label += f" [{settings}]"
    if is_approximate(result):
        label += f" [{result.search_info.get('index')}] {APPROXIMATE_MARK}"
    return label


def system_labels(results: Sequence[Result]) -> dict[str, str]:
    """System key -> display label, unique.

    Systems of one model name whose settings differ get those settings in the label
    (``all-MiniLM-L6-v2 [max_length 128]``); labels that still clash get the model
    fingerprint, or a hash when fingerprints do not tell them apart.
    """
    systems: dict[str, Result] = {}
    for result in results:
        systems.setdefault(system_key(result), result)
    keys = sorted(systems)
    suffixes = settings_suffixes(
        [systems[k] for k in keys], {i: systems[k].model for i, k in enumerate(keys)}
    )
    by_label: dict[str, set[str]] = defaultdict(set)
    for i, key in enumerate(keys):
        by_label[_base_label(systems[key], suffixes[i])].add(key)
    fingerprints = {k: str(systems[k].model_info.get("fingerprint", ""))[:8] for k in keys}
    labels = {}
    for label, members in by_label.items():
        if len(members) == 1:
            labels[next(iter(members))] = label
            continue
        fps = [fingerprints[k] for k in members]
        unique_fp = len(set(fps)) == len(fps) and all(fps)
        for key in members:
            suffix = (
                fingerprints[key] if unique_fp else hashlib.sha256(key.encode()).hexdigest()[:6]
            )
            labels[key] = f"{label} [{suffix}]"
    return labels


def suites_of(result: Result, explicit: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Suites a task belongs to: from ``explicit`` (task -> suites) when given, which then
    replaces every card's suites; else the task card's ``suite`` key (a name or a list)."""
    if explicit is not None:
        return sorted(set(explicit.get(result.task, ())))
    value = (result.task_info.get("card") or {}).get("suite")
    if not value:
        return []
    return sorted({value} if isinstance(value, str) else {str(v) for v in value})


def _path_order(item: ResultFile) -> tuple[int, str]:
    """Shallowest path first, then by name: a results folder wins over a copy in a run folder."""
    return (len(item.path.parts), str(item.path))


def _row_preference(item: ResultFile) -> tuple:
    """Which of several identical results is the row: the untruncated one (not a Matryoshka
    view that keeps every dimension), then :func:`_path_order`."""
    return (matryoshka_dim(item.result) is not None, *_path_order(item))


def _split_duplicates(
    kept: Sequence[ResultFile],
) -> tuple[list[ResultFile], list[tuple[ResultFile, ResultFile]]]:
    """The rows (one per distinct result and per system) and the (duplicate, used) pairs."""
    widths = full_widths(item.result for item in kept)
    by_identity: dict[str, ResultFile] = {}
    by_system: dict[str, ResultFile] = {}
    rows, duplicates = [], []
    for item in sorted(kept, key=_row_preference):
        identity = result_identity(item.result, widths)
        key = system_key(item.result)
        used = by_identity.get(identity) or by_system.get(key)
        if used is not None:
            duplicates.append((item, used))
            continue
        by_identity[identity] = by_system[key] = item
        rows.append(item)
    return rows, duplicates


def build_boards(
    results: Sequence[ResultFile],
    suites: Mapping[str, Sequence[str]] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> list[Board]:
    """Group results by task split, keep the largest comparable group of full-split results (a
    ``--limit`` sample heads a board only when nothing else exists), show identical results
    once, rank by main score.

    ``labels`` (system key -> label, see :func:`system_labels`) only breaks ties in the ranking.
    """
    by_task: dict[tuple[str, str], list[ResultFile]] = defaultdict(list)
    for item in sorted(results, key=_path_order):
        by_task[(item.result.task, item.result.split)].append(item)
    labels = labels if labels is not None else system_labels([r.result for r in results])
    boards, used_slugs = [], set()
    for (task, split), items in sorted(by_task.items()):
        groups: dict[tuple, list[ResultFile]] = defaultdict(list)
        for item in items:
            groups[comparability_key(item.result)].append(item)
        # Full splits first: a --limit sample never becomes the headline, however many share it.
        ordered = sorted(groups, key=lambda k: (not any(is_full_split(i.result) for i in groups[k]),
                                                -len(groups[k]), repr(k)))
        kept = groups[ordered[0]]
        full = any(is_full_split(item.result) for item in kept)
        samples = [item for item in kept if full and not is_full_split(item.result)]
        kept = [item for item in kept if not full or is_full_split(item.result)]
        reference = kept[0].result
        apart = []
        for key in ordered[1:]:
            for item in groups[key]:
                if full and not is_full_split(item.result):
                    samples.append(item)
                else:
                    problem = comparability_problem(reference, item.result)
                    apart.append((item, problem or "not comparable"))
        rows, duplicates = _split_duplicates(kept)
        entries = sorted(
            rows,
            key=lambda r: (-r.result.main_score, labels[system_key(r.result)], str(r.path)),
        )
        name = f"{slug(task)}-{slug(split)}"
        board_slug, n = name, 2
        while board_slug in used_slugs:
            board_slug, n = f"{name}-{n}", n + 1
        used_slugs.add(board_slug)
        boards.append(
            Board(
                task=task,
                split=split,
                slug=board_slug,
                entries=entries,
                apart=apart,
                samples=samples,
                duplicates=duplicates,
                suites=suites_of(reference, suites),
            )
        )
    return boards


def compute_deltas(board: Board, *, seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES) -> None:
    """Paired delta of every entry to rank 1 on the main metric (one resampling per board)."""
    leader = board.entries[0].result
    metric = board.main_metric
    columns, paths, means = [], [], []
    for item in board.entries[1:]:
        try:
            li, oi = align_queries(leader.per_query, item.result.per_query)
        except VembedError as err:  # shown in the table instead of a delta
            board.deltas[item.path] = f"n/a: {err}"
            continue
        ours, lead = (
            item.result.per_query.per_query[metric][oi],
            leader.per_query.per_query[metric][li],
        )
        columns.append(ours - lead)
        paths.append(item.path)
        means.append((float(lead.mean()), float(ours.mean())))
    if not columns:
        return
    d = np.column_stack(columns)
    low, high = paired_bootstrap_ci(d, n_resamples=n_resamples, seed=seed)
    p = paired_permutation_pvalue(d, n_resamples=n_resamples, seed=seed)
    for j, path in enumerate(paths):
        board.deltas[path] = PairedDelta(
            metric=metric,
            base=means[j][0],
            tuned=means[j][1],
            delta=float(d[:, j].mean()),
            ci_low=float(low[j]),
            ci_high=float(high[j]),
            p_value=float(p[j]),
            n_queries=int(d.shape[0]),
            n_resamples=n_resamples,
            confidence=0.95,
            seed=seed,
        )


# ---------------------------------------------------------------------------- pages


@dataclass
class Pages:
    """Where each page, plot and export lives, so pages can link to each other."""

    out: Path
    labels: dict[str, str]
    task_plots: dict[str, list[Block]] = field(default_factory=dict)
    run_plots: dict[str, list[Block]] = field(default_factory=dict)
    run_slugs: dict[Path, str] = field(default_factory=dict)
    seed: int = 0
    n_resamples: int = DEFAULT_RESAMPLES
    exports: bool = False
    """Whether the CSV and LaTeX files are written (the pages then link them)."""

    def overview_path(self) -> Path:
        return self.out / "README.md"

    def overview_export(self, suffix: str) -> Path:
        return self.out / f"overview{suffix}"

    def task_path(self, board: Board) -> Path:
        return self.out / "tasks" / f"{board.slug}.md"

    def run_path(self, run: TrainingRun) -> Path:
        return self.out / "runs" / f"{self.run_slugs[run.folder]}.md"

    def label(self, result: Result) -> str:
        return self.labels[system_key(result)]


def task_anchor(board: Board) -> str:
    return f"task-{board.slug}"


def run_anchor(slug_: str) -> str:
    return f"run-{slug_}"


def metric_order(board: Board) -> list[str]:
    """The main metric, then every other metric in the order the results list them."""
    names: dict[str, None] = {}
    for item in board.entries:
        for name in item.result.scores:
            names.setdefault(name)
    return [board.main_metric] + [n for n in names if n != board.main_metric]


def headline_metrics(board: Board) -> list[str]:
    """The main metric and its curve family at a few K values: all of the task's K values
    when it has at most three, else those of 1, 10 and 100 it has (else first, middle, last)."""
    ks = sorted(int(k) for k in board.reference.k_values)
    picked = ks if len(ks) <= 3 else [k for k in ks if k in _HEADLINE_KS]
    if len(picked) < 2 <= len(ks):
        picked = sorted({ks[0], ks[len(ks) // 2], ks[-1]})
    family = curve_family(board.main_metric)
    available = set(metric_order(board))
    names = [f"{family}@{k}" for k in picked]
    return [board.main_metric] + [n for n in names if n in available and n != board.main_metric]


def _result_link(item: ResultFile, text: str = "json") -> Link:
    return Link(text, item.path)


def board_ranks(board: Board) -> list[int]:
    """Competition ranks by main score: ties share the rank of the first of them."""
    ranks, rank, previous = [], 0, None
    for position, item in enumerate(board.entries, start=1):
        if item.result.main_score != previous:
            rank, previous = position, item.result.main_score
        ranks.append(rank)
    return ranks


def _score_cell(result: Result, metric: str) -> Cell:
    value = result.scores.get(metric)
    return Cell(fmt_score(value), sort=value)


def leaderboard_table(board: Board, pages: Pages) -> Table:
    """Ranked rows: main metric, Δ to rank 1 with interval and p, the headline K values, dim,
    file (the other metrics are in :func:`full_metrics_table`)."""
    metrics = headline_metrics(board)
    columns = ["#", "model", metrics[0], "Δ vs #1", "95% CI", "p", *metrics[1:], "dim", "result"]
    numeric = [True, False, True, True, False, True, *([True] * (len(metrics) - 1)), True, False]
    rows = []
    for position, (rank, item) in enumerate(zip(board_ranks(board), board.entries), start=1):
        result = item.result
        delta = board.deltas.get(item.path)
        if position == 1:
            delta_row = [Cell("—"), Cell(""), Cell("")]
        elif isinstance(delta, PairedDelta):
            delta_row = delta_cells(delta)
        else:
            delta_row = [Cell(delta or "n/a"), Cell(""), Cell("")]
        label = pages.label(result)
        rows.append(
            [
                Cell(str(rank), sort=rank),
                Cell(label, sort=label),
                _score_cell(result, metrics[0]),
                *delta_row,
                *(_score_cell(result, m) for m in metrics[1:]),
                Cell(str(result.embedding_dim), sort=result.embedding_dim),
                Cell(_result_link(item)),
            ]
        )
    return Table(
        columns=columns,
        rows=rows,
        numeric=numeric,
        table_id=f"board-{board.slug}",
        export_omit=(len(columns) - 1,),
    )


def full_metrics_table(board: Board, pages: Pages) -> Table:
    """Every metric of every ranked row (folded under the headline table)."""
    metrics = metric_order(board)
    rows = [
        [
            Cell(str(rank), sort=rank),
            Cell(pages.label(item.result), sort=pages.label(item.result)),
            *(_score_cell(item.result, m) for m in metrics),
        ]
        for rank, item in zip(board_ranks(board), board.entries)
    ]
    return Table(
        columns=["#", "model", *metrics],
        rows=rows,
        numeric=[True, False, *([True] * len(metrics))],
        table_id=f"board-{board.slug}-all",
    )


def _apart_table(board: Board, pages: Pages) -> Table:
    rows = []
    for item, reason in sorted(
        board.apart, key=lambda a: (pages.label(a[0].result), str(a[0].path))
    ):
        result = item.result
        rows.append(
            [
                Cell(pages.label(result)),
                Cell(result.main_metric),
                Cell(fmt_score(result.main_score), sort=result.main_score),
                Cell(reason),
                Cell(_result_link(item)),
            ]
        )
    return Table(
        columns=["model", "main metric", "score", "why it is not in the table", "result"],
        rows=rows,
        numeric=[False, False, True, False, False],
    )


def _samples_table(board: Board, pages: Pages) -> Table:
    rows = []
    for item in sorted(board.samples, key=lambda i: (pages.label(i.result), str(i.path))):
        result = item.result
        rows.append(
            [
                Cell(pages.label(result)),
                Cell(sample_label(result)),
                Cell(str(result.task_info.get("n_queries", "")), sort=result.task_info.get("n_queries")),
                Cell(result.main_metric),
                Cell(fmt_score(result.main_score), sort=result.main_score),
                Cell(_result_link(item)),
            ]
        )
    return Table(
        columns=["model", "sample", "queries", "main metric", "score", "result"],
        rows=rows,
        numeric=[False, False, True, False, True, False],
    )


def _duplicate_note(board: Board, duplicate: Result, used: Result) -> str:
    """Why a duplicate is one, and whether its scores agree with the row's."""
    dim = matryoshka_dim(duplicate)
    note = []
    if dim is not None and matryoshka_dim(used) is None:
        note.append(f"a Matryoshka view keeping all {dim} dimensions is the full model")
    if duplicate.scores == used.scores:
        note.append("identical scores")
    else:
        note.append(
            f"{board.main_metric} {fmt_score(duplicate.main_score)} here vs "
            f"{fmt_score(used.main_score)} in the row"
        )
    return "; ".join(note)


def _duplicates_table(board: Board, pages: Pages) -> Table:
    rows = []
    for duplicate, used in board.duplicates:
        rows.append(
            [
                Cell(pages.label(duplicate.result)),
                Cell(_result_link(duplicate, "duplicate")),
                Cell(pages.label(used.result)),
                Cell(_result_link(used, "row")),
                Cell(_duplicate_note(board, duplicate.result, used.result)),
            ]
        )
    return Table(
        columns=["model", "result", "shown as", "used instead", "note"],
        rows=rows,
        numeric=[False, False, False, False, False],
    )


def _recall_cells(result: Result) -> list[Cell]:
    """A result's measured ANN recall (every cutoff), sample size, seed and reference, as cells."""
    info = result.search_info
    values = sorted(
        (int(key.split("@", 1)[1]), value)
        for key, value in info.items()
        if key.startswith("ann_recall@") and key.split("@", 1)[1].isdigit()
    )
    if not values:
        return [Cell("not measured (older result file)"), Cell(""), Cell(""), Cell("")]
    shown = ", ".join(f"@{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in values)
    n = info.get("ann_recall_queries")
    return [
        Cell(shown, sort=values[-1][1]),
        Cell(f"{n:,}" if isinstance(n, int) else "", sort=n if isinstance(n, int) else None),
        Cell(str(info.get("ann_recall_seed", ""))),
        Cell(str(info.get("ann_recall_reference", ""))),
    ]


def approximate_note(items: Sequence[ResultFile], pages: Pages, *, per_result: bool) -> list[Block]:
    """The footnote on the approximate mark: what it means, and (``per_result``) each one's recall."""
    marked = [item for item in items if is_approximate(item.result)]
    if not marked:
        return []
    text = (
        f"{APPROXIMATE_MARK} approximate search: the index in brackets returned its own top-k, which may "
        "miss some of the exact top-k, so these scores are not exactly those of the embeddings. "
        "ANN recall@k is the share of the exact top-k it returned, measured on a seeded sample of queries"
    )
    if not per_result:
        return [Para((text + "; each task page lists it.",))]
    rows = [
        [Cell(pages.label(item.result)), *_recall_cells(item.result)]
        for item in sorted(marked, key=lambda i: (pages.label(i.result), str(i.path)))
    ]
    table = Table(
        columns=["model", "ANN recall", "queries", "seed", "exact reference"],
        rows=rows,
        numeric=[False, False, True, True, False],
    )
    return [Para((text + ":",)), table]


def _definitions_link(pages: Pages) -> Link:
    return Link(
        "Metric definitions",
        pages.overview_path(),
        anchor=METRIC_DEFINITIONS_ANCHOR,
        fragment=METRIC_DEFINITIONS_ANCHOR,
    )


def _downloads(pages: Pages, path: Path, what: str) -> tuple:
    """`` Download {what}: CSV · LaTeX.`` inline parts (nothing when exports are off)."""
    if not pages.exports:
        return ()
    return (
        f" {what}: ",
        Link("CSV", path.with_suffix(".csv")),
        " · ",
        Link("LaTeX", path.with_suffix(".tex")),
        ".",
    )


def task_blocks(board: Board, pages: Pages) -> list[Block]:
    """The page of one task split."""
    ref = board.reference
    info = ref.task_info
    fingerprint = str(info.get("data_fingerprint", ""))[:12] or "none"
    suites = f" · suite: {', '.join(board.suites)}" if board.suites else ""
    headline = headline_metrics(board)
    others = len(metric_order(board)) - len(headline)
    blocks: list[Block] = [
        Heading(1, f"{board.task} · {board.split}", anchor=task_anchor(board)),
        Para(
            (
                "Main metric ",
                Bold(board.main_metric),
                f" · K values {', '.join(map(str, sorted(ref.k_values)))}"
                f" · {info.get('n_queries', '?')} queries × {info.get('n_corpus', '?')} documents"
                " · data ",
                Code(fingerprint),
                suites,
                ". ",
                Link("All tasks", pages.overview_path(), anchor="overview"),
                ". ",
                _definitions_link(pages),
                ".",
                *_downloads(pages, pages.task_path(board), "This table"),
            )
        ),
    ]
    if not is_full_split(ref):
        blocks.append(
            Para(
                (
                    Bold("Not a full split:"),
                    f" every result of this task is on a query sample ({sample_label(ref)}), "
                    "so these scores estimate the split's with sampling error.",
                )
            )
        )
    blocks += [
        Para(
            (
                f"Scores ×100, ranked by {board.main_metric}. "
                "Δ vs #1 is the difference to rank 1 on "
                f"{board.main_metric}. ",
                method_note(pages.seed, pages.n_resamples),
            )
        ),
        leaderboard_table(board, pages),
    ]
    if others > 0:
        blocks.append(
            Details(f"All {len(metric_order(board))} metrics", (full_metrics_table(board, pages),))
        )
    blocks += rank_blocks(
        board, pages.label, seed=pages.seed, n_resamples=pages.n_resamples,
        table_id=f"ranks-{board.slug}",
    )
    blocks += approximate_note(
        [*board.entries, *(item for item, _ in board.apart)], pages, per_result=True
    )
    blocks += pages.task_plots.get(board.slug, [])
    if board.duplicates:
        blocks += [
            Heading(2, "Duplicates (shown once)"),
            Para(
                (
                    "Further result files with the same weights, settings and data as a row of "
                    "the table (a Matryoshka view that keeps every dimension is the full model): "
                    "not ranked twice. The untruncated result, then the file nearest the top of "
                    "the folders (then by name) is the row, never the best one.",
                )
            ),
            _duplicates_table(board, pages),
        ]
    if board.samples:
        blocks += [
            Heading(2, "Query samples (not ranked)"),
            Para(
                (
                    "Results on a --limit sample of the queries: they estimate the full split's "
                    "scores with sampling error, so they are never ranked beside full splits.",
                )
            ),
            _samples_table(board, pages),
        ]
    if board.apart:
        blocks += [
            Heading(2, "Not comparable with this leaderboard"),
            Para(
                (
                    "Same task name, but computed on other data, cutoffs or metric definitions, "
                    "so these scores are not ranked with the ones above.",
                )
            ),
            _apart_table(board, pages),
        ]
    grids = [(pages.label(item.result), image) for item in board.entries for image in item.images]
    if grids:
        blocks.append(Heading(2, "Retrieval examples"))
        blocks += [Image(image, f"{label}: {image.name}") for label, image in grids]
    return blocks


def definition_blocks(boards: Sequence[Board], runs: Sequence[TrainingRun] = ()) -> list[Block]:
    """The metric definitions of every board and run, once (at the end of a document).

    A metric defined differently by some results (which are then never ranked together)
    gets one row per definition, naming the tasks that use it.
    """
    texts: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    results = [item.result for b in boards for item in (*b.entries, *(i for i, _ in b.apart))]
    results += [item.result for run in runs for pair in run.pairs for item in pair]
    for result in results:
        for name, text in result.metric_definitions.items():
            texts[name][text].add(result.task)
    if not texts:
        return []
    varied = any(len(variants) > 1 for variants in texts.values())
    order = {name: i for i, name in enumerate(texts)}  # first seen (results list them in order)
    rows = []
    for name in sorted(texts, key=order.__getitem__):
        for text, tasks in sorted(texts[name].items()):
            row = [Cell(Code(name)), Cell(text)]
            if varied:
                row.append(Cell(", ".join(sorted(tasks)) if len(texts[name]) > 1 else "all"))
            rows.append(row)
    columns = ["metric", "definition", *(["tasks"] if varied else [])]
    return [
        Heading(2, "Metric definitions", anchor=METRIC_DEFINITIONS_ANCHOR),
        Para(("Scores are means over the queries of these per-query values.",)),
        Table(columns=columns, rows=rows, numeric=[False] * len(columns), table_id="metric-definitions-table"),
    ]


def _column_header(board: Board, boards: Sequence[Board]) -> str:
    splits = {b.split for b in boards if b.task == board.task}
    name = board.task if len(splits) == 1 else f"{board.task}/{board.split}"
    return f"{name} ({board.main_metric})"


def _suite_cards(names: Sequence[str], boards: Sequence[Board]) -> dict[str, object]:
    """Suite name -> its suite card, for suites whose card defines how to combine exactly the
    tasks on the boards (one split each; all members for ``rsum``, a subset for a summary)."""
    from vembed_bench.data.cards import list_cards
    from vembed_bench.data.suites import suite_members

    cards = {c.name: c for c in list_cards() if c.loader == "suite"} if names else {}
    defined = {}
    for name in names:
        card = cards.get(name)
        tasks = [b.task for b in boards if name in b.suites]
        if card is None or len(set(tasks)) != len(tasks):
            continue
        members = set(suite_members(card))
        complete = set(tasks) == members
        if set(tasks) <= members and (complete or card.params.get("summary")):
            defined[name] = card
    return defined


@dataclass
class Overview:
    """The numbers of the overview table (the Markdown/HTML table and the CSV are made from it)."""

    boards: list[Board]
    """Columns, by suite then task and split."""
    rows: list[str]
    """System labels, by number of tasks, then mean main score, then label."""
    scores: dict[str, dict[str, float]]
    """label -> board slug -> main score."""
    dims: dict[str, set[int]]
    suite_columns: list[tuple[str, str, str]]
    """(suite, score key, column label)."""
    suite_scores: dict[str, dict[tuple[str, str], float]]
    """label -> (suite, key) -> score (Rsum in percent, everything else 0..1)."""

    def column_header(self, board: Board) -> str:
        return _column_header(board, self.boards)


def overview_data(boards: Sequence[Board], pages: Pages) -> Overview:
    """Systems × task splits on main scores, then each suite's scores.

    A suite with a suite card is combined as its card says (:func:`vembed_bench.data.suites.combine_scores`:
    Rsum, or for MMEB the Precision@1 averages per meta-task, IND, OOD and Overall); any other
    suite (e.g. ``--suite NAME=...``) gets the mean of its members' main scores.
    """
    from vembed_bench.data.suites import combine_scores, suite_columns

    ordered = sorted(boards, key=lambda b: (b.suites[:1] or ["\uffff"], b.task, b.split))
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    results: dict[str, dict[str, Result]] = defaultdict(dict)
    dims: dict[str, set[int]] = defaultdict(set)
    for board in ordered:
        for item in board.entries:
            label = pages.label(item.result)
            scores[label][board.slug] = item.result.main_score
            results[label][board.slug] = item.result
            dims[label].add(item.result.embedding_dim)
    suite_names = sorted({s for b in ordered for s in b.suites})
    suite_members = {s: [b for b in ordered if s in b.suites] for s in suite_names}
    cards = _suite_cards(suite_names, ordered)
    suite_cols: list[tuple[str, str, str]] = []  # (suite, score key, column label)
    for suite in suite_names:
        if suite in cards:
            suite_cols += [(suite, key, f"{suite} {text}") for key, text in suite_columns(cards[suite]).items()]
        else:
            suite_cols.append((suite, "avg", f"{suite} avg"))
    averages: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for label, row in scores.items():
        for suite, members in suite_members.items():
            if not all(m.slug in row for m in members):
                continue
            if suite in cards:
                combined = combine_scores(cards[suite], {m.task: results[label][m.slug] for m in members})
                for key in suite_columns(cards[suite]):
                    if key in combined:
                        averages[label][(suite, key)] = float(combined[key])
            else:
                averages[label][(suite, "avg")] = float(np.mean([row[m.slug] for m in members]))

    def order(label: str) -> tuple:
        row = scores[label]
        return (-len(row), -float(np.mean(list(row.values()))), label)

    return Overview(
        boards=ordered,
        rows=sorted(scores, key=order),
        scores=dict(scores),
        dims=dict(dims),
        suite_columns=suite_cols,
        suite_scores=dict(averages),
    )


def overview_table(boards: Sequence[Board], pages: Pages, data: Overview | None = None) -> Table:
    """Systems × task splits on main scores, then each suite's scores (see :func:`overview_data`);
    the best of each column is bold."""
    data = data if data is not None else overview_data(boards, pages)
    ordered, scores, averages = data.boards, data.scores, data.suite_scores
    best = {b.slug: max(row[b.slug] for row in scores.values() if b.slug in row) for b in ordered}
    best_avg = {
        (s, k): max((row[(s, k)] for row in averages.values() if (s, k) in row), default=None)
        for s, k, _ in data.suite_columns
    }
    columns = (
        ["model", "dim"]
        + [data.column_header(b) for b in ordered]
        + [text for _, _, text in data.suite_columns]
    )
    header_links = {
        2 + i: Link(data.column_header(b), pages.task_path(b), anchor=task_anchor(b))
        for i, b in enumerate(ordered)
    }
    rows = []
    for label in data.rows:
        dims = data.dims[label]
        row = [
            Cell(label, sort=label),
            Cell("/".join(str(d) for d in sorted(dims)), sort=max(dims)),
        ]
        for board in ordered:
            value = scores[label].get(board.slug)
            row.append(
                Cell(
                    fmt_score(value),
                    sort=value,
                    bold=value is not None and value == best[board.slug],
                )
            )
        for suite, key, _ in data.suite_columns:
            value = averages.get(label, {}).get((suite, key))
            # Rsum is already in percent (up to 600); fmt_score multiplies by 100.
            shown = value / 100 if value is not None and key == "rsum" else value
            row.append(
                Cell(
                    fmt_score(shown),
                    sort=value,
                    bold=value is not None and value == best_avg[(suite, key)],
                )
            )
        rows.append(row)
    return Table(
        columns=columns,
        rows=rows,
        numeric=[False, True] + [True] * (len(columns) - 2),
        table_id="overview-table",
        header_links=header_links,
    )


def _tasks_table(boards: Sequence[Board], pages: Pages) -> Table:
    rows = []
    for board in boards:
        info = board.reference.task_info
        rows.append(
            [
                Cell(
                    Link(board.task, pages.task_path(board), anchor=task_anchor(board)),
                    sort=board.task,
                ),
                Cell(board.split),
                Cell(board.main_metric),
                Cell(", ".join(map(str, sorted(board.reference.k_values)))),
                Cell(str(info.get("n_queries", "")), sort=info.get("n_queries")),
                Cell(str(info.get("n_corpus", "")), sort=info.get("n_corpus")),
                Cell(", ".join(board.suites)),
                Cell(str(len(board.entries)), sort=len(board.entries)),
                Cell(str(len(board.apart) + len(board.samples)),
                     sort=len(board.apart) + len(board.samples)),
            ]
        )
    return Table(
        columns=[
            "task",
            "split",
            "main metric",
            "K values",
            "queries",
            "documents",
            "suite",
            "models",
            "listed apart",
        ],
        rows=rows,
        numeric=[False, False, False, False, True, True, False, True, True],
        table_id="tasks-table",
    )


def run_summary_rows(runs: Sequence[TrainingRun], pages: Pages) -> Table:
    rows = []
    for run in runs:
        slug_ = pages.run_slugs[run.folder]
        for base, tuned in run.pairs:
            link = Cell(
                Link(run.name, pages.run_path(run), anchor=run_anchor(slug_)), sort=run.name
            )
            head = [
                link,
                Cell(base.result.task),
                Cell(base.result.split),
                Cell(pages.label(base.result)),
                Cell(pages.label(tuned.result)),
                Cell(base.result.main_metric),
            ]
            problem = comparability_problem(base.result, tuned.result)
            if problem:
                blank = Cell("")
                rows.append([*head, blank, blank, Cell(f"not comparable: {problem}"), blank, blank])
                continue
            delta = paired_deltas(
                base.result,
                tuned.result,
                [base.result.main_metric],
                n_resamples=pages.n_resamples,
                seed=pages.seed,
            )[0]
            rows.append(
                [
                    *head,
                    Cell(fmt_score(delta.base), sort=delta.base),
                    Cell(fmt_score(delta.tuned), sort=delta.tuned),
                    *delta_cells(delta),
                ]
            )
    return Table(
        columns=[
            "run",
            "task",
            "split",
            "zero-shot",
            "fine-tuned",
            "metric",
            "zero-shot score",
            "fine-tuned score",
            "Δ",
            "95% CI",
            "p",
        ],
        rows=rows,
        numeric=[False] * 6 + [True, True, True, False, True],
        table_id="runs-table",
    )


def overview_blocks(
    boards: Sequence[Board],
    runs: Sequence[TrainingRun],
    pages: Pages,
    data: Overview | None = None,
) -> list[Block]:
    """The front page: models × tasks, the task list, training runs, results kept apart (the
    metric definitions, :func:`definition_blocks`, follow it at the end of the document)."""
    data = data if data is not None or not boards else overview_data(boards, pages)
    blocks: list[Block] = [Heading(1, "Leaderboard", anchor="overview")]
    suites = sorted({s for b in boards for s in b.suites})
    note = (
        "Main score of each task ×100 (metric in the column header; click a task for its full "
        "leaderboard). Rows: models by number of tasks, then mean main score. Bold: best in column."
    )
    if suites:
        note += " Suite averages only for models evaluated on every task of the suite."
    if _suite_cards(suites, boards):
        note += (
            " A suite whose card defines its own scores shows those (Rsum in percent; MMEB:"
            " Precision@1 averaged per meta-task, in-distribution, out-of-distribution, overall)."
        )
    if boards:
        note += (
            " Results with the same weights, settings and data are shown once (their task pages"
            " list the duplicates); settings that differ between rows of one model are in brackets."
        )
        blocks += [
            Para((note, " ", _definitions_link(pages), ".",
                  *_downloads(pages, pages.overview_export(".md"), "This table"))),
            overview_table(boards, pages, data),
        ]
        blocks += approximate_note([item for b in boards for item in b.entries], pages, per_result=False)
        blocks += cross_task_rank_blocks(
            boards, pages.label, seed=pages.seed, n_resamples=pages.n_resamples,
            table_id="ranks-overview",
        )
        blocks += [Heading(2, "Tasks"), _tasks_table(boards, pages)]
    else:
        blocks.append(Para(("No result files outside training runs.",)))
    if runs:
        blocks += [
            Heading(2, "Training runs"),
            Para(
                (
                    "Zero-shot → fine-tuned on each run's main metric. ",
                    method_note(pages.seed, pages.n_resamples),
                )
            ),
            run_summary_rows(runs, pages),
        ]
    apart = [(b, item, reason) for b in boards for item, reason in b.apart]
    apart += [(b, item, sample_label(item.result)) for b in boards for item in b.samples]
    if apart:
        rows = [
            [
                Cell(Link(b.task, pages.task_path(b), anchor=task_anchor(b))),
                Cell(b.split),
                Cell(pages.label(item.result)),
                Cell(item.result.main_metric),
                Cell(fmt_score(item.result.main_score), sort=item.result.main_score),
                Cell(reason),
                Cell(_result_link(item)),
            ]
            for b, item, reason in sorted(
                apart, key=lambda a: (a[0].slug, pages.label(a[1].result), str(a[1].path))
            )
        ]
        blocks += [
            Heading(2, "Results not comparable with the columns above"),
            Para(
                (
                    "Same task name as a column, but a query sample, other data, cutoffs or "
                    "metric definitions; they are never ranked with it.",
                )
            ),
            Table(
                columns=["task", "split", "model", "main metric", "score", "reason", "result"],
                rows=rows,
                numeric=[False, False, False, False, True, False, False],
            ),
        ]
    return blocks


def run_blocks(run: TrainingRun, pages: Pages) -> list[Block]:
    """The page of one training run: loss curve and one comparison table per evaluated pair."""
    slug_ = pages.run_slugs[run.folder]
    blocks: list[Block] = [
        Heading(1, f"Training run: {run.name}", anchor=run_anchor(slug_)),
        Para(
            (
                "Run folder: ",
                Link(run.folder.name, run.folder / "comparison.json"),
                ". ",
                Link("All tasks", pages.overview_path(), anchor="overview"),
                ". ",
                _definitions_link(pages),
                ".",
                *_downloads(pages, pages.run_path(run), "These tables"),
            )
        ),
    ]
    blocks += pages.run_plots.get(slug_, [])
    for number, (base, tuned) in enumerate(run.pairs, start=1):
        blocks.append(Heading(2, f"{base.result.task} · {base.result.split}"))
        problem = comparability_problem(base.result, tuned.result)
        if problem:
            blocks.append(Para((f"Not compared: {problem}.",)))
            continue
        blocks += comparison_blocks(
            base.result,
            tuned.result,
            seed=pages.seed,
            n_resamples=pages.n_resamples,
            table_id=f"run-{slug_}-{number}",
        )
        blocks.append(
            Para(
                (
                    "Results: ",
                    Link("zero-shot", base.path),
                    ", ",
                    Link("fine-tuned", tuned.path),
                    ".",
                )
            )
        )
    return blocks
