"""What a fine-tuning run changed query by query, and whether it forgot what it knew elsewhere.

An aggregate delta hides its composition: +2 points can be ten queries fixed
and eight broken. :func:`query_changes` counts, on a task's main metric, the
queries that improved, worsened and stayed (per-query values of the two
results, aligned by query id), and names the biggest movers each way with the
top documents each model retrieved for them (read back from the TREC run
files written beside the results, so the report can be rebuilt from files).

A *guard task* is one the run did not train for. :func:`guard_verdict` calls a
drop on it forgetting when its 95% paired bootstrap interval
(:mod:`vembed_bench.report.stats`, the interval of the comparison table)
lies entirely below zero.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.report.document import Block, Bold, Cell, Code, Heading, Image, Para, Table, fmt_delta, fmt_score
from vembed_bench.report.stats import DEFAULT_RESAMPLES, PairedDelta, align_queries, paired_deltas

if TYPE_CHECKING:
    from vembed_bench.data.types import Item, TaskData
    from vembed_bench.results import Result

__all__ = [
    "FORGETTING",
    "IMPROVED",
    "NO_CHANGE",
    "UNCHANGED_TOLERANCE",
    "GuardVerdict",
    "Mover",
    "QueryChanges",
    "RankedDoc",
    "aligned_values",
    "changes_blocks",
    "guard_verdict",
    "has_images",
    "query_changes",
    "read_top_documents",
    "save_movers_grid",
    "verdict_blocks",
]

UNCHANGED_TOLERANCE = 1e-9
"""A per-query difference at most this large (either way) counts as unchanged: both
models' values come from the same formula on ranks, so equal ranks give equal values
and only float noise is below it."""
TOP_DOCUMENTS = 3
SNIPPET_CHARS = 60

FORGETTING = "forgetting"
IMPROVED = "improved"
NO_CHANGE = "no significant change"


# -- per-query changes ---------------------------------------------------------------------


@dataclass(frozen=True)
class RankedDoc:
    """One retrieved document of a mover: where it ranked and what it says."""

    id: str
    rank: int
    score: float
    relevant: bool | None = None
    """Whether the qrels call it relevant (None: the task data was not available)."""
    snippet: str = ""
    image: str | None = None


@dataclass(frozen=True)
class Mover:
    """A query whose main-metric value moved, with both models' top documents."""

    query_id: str
    base: float
    tuned: float
    delta: float
    query: str = ""
    image: str | None = None
    before: tuple[RankedDoc, ...] = ()
    after: tuple[RankedDoc, ...] = ()


@dataclass(frozen=True)
class QueryChanges:
    """Per-query wins and losses of ``tuned`` over ``base`` on one task split."""

    task: str
    split: str
    metric: str
    n_queries: int
    improved: int
    worsened: int
    unchanged: int
    top_improved: tuple[Mover, ...] = ()
    top_worsened: tuple[Mover, ...] = ()
    tolerance: float = UNCHANGED_TOLERANCE
    base_run: str | None = None
    """The zero-shot TREC run file the top documents were read from."""
    tuned_run: str | None = None
    grid: str | None = None
    """The thumbnail grid of the movers (image tasks)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def aligned_values(base: "Result", tuned: "Result", metric: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Query ids (the base's order) and both results' per-query ``metric`` values, aligned."""
    for result in (base, tuned):
        if metric not in result.per_query.per_query:
            raise VembedError(f"{result.model} on {result.task} has no per-query {metric} values")
    bi, ti = align_queries(base.per_query, tuned.per_query)
    ids = [base.per_query.query_ids[i] for i in bi]
    return ids, base.per_query.per_query[metric][bi], tuned.per_query.per_query[metric][ti]


def query_changes(
    base: "Result",
    tuned: "Result",
    *,
    metric: str | None = None,
    top: int = 5,
    base_run: str | Path | None = None,
    tuned_run: str | Path | None = None,
    data: "TaskData | None" = None,
    tolerance: float = UNCHANGED_TOLERANCE,
) -> QueryChanges:
    """Count improved / worsened / unchanged queries and pick the ``top`` movers each way.

    Movers are ordered by the size of their change, ties by query id. With the
    two TREC run files, each mover lists both models' top documents; with the
    task ``data`` (the loaded split both results were scored on), the query text,
    document snippets and relevance marks too.
    """
    metric = metric or base.main_metric
    ids, b, t = aligned_values(base, tuned, metric)
    d = t - b
    up = [i for i in range(len(ids)) if d[i] > tolerance]
    down = [i for i in range(len(ids)) if d[i] < -tolerance]
    up.sort(key=lambda i: (-d[i], ids[i]))
    down.sort(key=lambda i: (d[i], ids[i]))
    chosen = [ids[i] for i in up[:top] + down[:top]]
    before = read_top_documents(base_run, chosen) if base_run else {}
    after = read_top_documents(tuned_run, chosen) if tuned_run else {}
    lookup = _Lookup(data)

    def mover(i: int) -> Mover:
        qid = ids[i]
        query = lookup.query(qid)
        return Mover(
            query_id=qid,
            base=float(b[i]),
            tuned=float(t[i]),
            delta=float(d[i]),
            query=_snippet(query, 200) if query else "",
            image=_image(query),
            before=tuple(lookup.doc(qid, *hit) for hit in before.get(qid, ())),
            after=tuple(lookup.doc(qid, *hit) for hit in after.get(qid, ())),
        )

    return QueryChanges(
        task=base.task,
        split=base.split,
        metric=metric,
        n_queries=len(ids),
        improved=len(up),
        worsened=len(down),
        unchanged=len(ids) - len(up) - len(down),
        top_improved=tuple(mover(i) for i in up[:top]),
        top_worsened=tuple(mover(i) for i in down[:top]),
        tolerance=tolerance,
        base_run=str(base_run) if base_run else None,
        tuned_run=str(tuned_run) if tuned_run else None,
    )


def read_top_documents(
    path: str | Path, query_ids: Sequence[str], k: int = TOP_DOCUMENTS
) -> dict[str, list[tuple[str, int, float]]]:
    """The first ``k`` ``(doc id, rank, score)`` of each of ``query_ids`` in a TREC run file."""
    wanted = set(query_ids)
    found: dict[str, list[tuple[str, int, float]]] = {}
    path = Path(path)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as err:
        raise VembedError(f"{path}: cannot read the run file ({err.strerror or err})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            parts = line.split()
            if len(parts) != 6:
                raise VembedError(f"{path}:{number}: a TREC run line has 6 fields "
                                  "(query-id Q0 doc-id rank score run-name)")
            qid, _, doc_id, rank, score, _ = parts
            if qid in wanted and int(rank) <= k:
                found.setdefault(qid, []).append((doc_id, int(rank), float(score)))
    return {qid: sorted(hits, key=lambda h: h[1]) for qid, hits in found.items()}


class _Lookup:
    """Query and document texts, images and relevance from the task data (if any)."""

    def __init__(self, data: "TaskData | None") -> None:
        self.data = data
        self.queries = {q.id: q for q in data.queries} if data else {}
        self.corpus = {d.id: d for d in data.corpus} if data else {}

    def query(self, qid: str) -> "Item | None":
        return self.queries.get(qid)

    def doc(self, qid: str, doc_id: str, rank: int, score: float) -> RankedDoc:
        if self.data is None:
            return RankedDoc(doc_id, rank, score)
        item = self.corpus.get(doc_id)
        grade = self.data.qrels.get(qid, {}).get(doc_id, 0)
        return RankedDoc(doc_id, rank, score, relevant=grade > 0,
                         snippet=_snippet(item) if item else "", image=_image(item))


def _snippet(item: "Item", chars: int = SNIPPET_CHARS) -> str:
    text = re.sub(r"\s+", " ", " ".join(p for p in (item.title, item.text) if p)).strip()
    if not text and item.image is not None:
        return Path(item.image).name
    return text if len(text) <= chars else text[: chars - 1].rstrip() + "…"


def _image(item: "Item | None") -> str | None:
    return str(item.image) if item is not None and item.image is not None else None


def changes_blocks(changes: QueryChanges, *, base_label: str = "zero-shot",
                   tuned_label: str = "fine-tuned", movers: bool = True) -> list[Block]:
    """The "Per-query changes" section of one task: counts, then (``movers``) the biggest
    losses and gains with their top documents, and the thumbnail grid of an image task."""
    blocks: list[Block] = [
        Heading(3, f"Per-query changes ({changes.metric})"),
        Para((
            f"{changes.n_queries} queries: {changes.improved} improved, {changes.worsened} worsened, "
            f"{changes.unchanged} unchanged ({changes.metric} per query, {tuned_label} − {base_label}). ",
            *([f"Top {TOP_DOCUMENTS} documents: ✓ relevant, ✗ not relevant."]
              if movers and (changes.top_improved or changes.top_worsened) else []),
        )),
    ]
    if not movers:
        return blocks
    for title, movers in (("Biggest losses", changes.top_worsened), ("Biggest gains", changes.top_improved)):
        if not movers:
            continue
        blocks.append(Para((title,)))
        blocks.append(Table(
            columns=["query", base_label, tuned_label, "Δ", f"top {TOP_DOCUMENTS} {base_label}",
                     f"top {TOP_DOCUMENTS} {tuned_label}"],
            rows=[_mover_row(m) for m in movers],
            numeric=[False, True, True, True, False, False],
        ))
    if changes.grid:
        blocks.append(Para((
            "Thumbnails: one row per mover (losses first); the query, its top "
            f"{TOP_DOCUMENTS} {base_label}, a gap, its top {TOP_DOCUMENTS} {tuned_label}; "
            "green frame relevant, red not.",
        )))
        blocks.append(Image(Path(changes.grid), f"{changes.task} per-query movers"))
    return blocks


def _mover_row(m: Mover) -> list[Cell]:
    label = m.query or (Path(m.image).name if m.image else "")
    return [
        Cell((Code(m.query_id), f" {label}" if label else ""), sort=m.query_id),
        Cell(fmt_score(m.base), sort=m.base),
        Cell(fmt_score(m.tuned), sort=m.tuned),
        Cell(fmt_delta(m.delta), sort=m.delta),
        Cell(_docs_inline(m.before)),
        Cell(_docs_inline(m.after)),
    ]


def _docs_inline(docs: Sequence[RankedDoc]) -> tuple:
    parts: list[Any] = []
    for doc in docs:
        mark = "" if doc.relevant is None else ("✓ " if doc.relevant else "✗ ")
        parts += [f"{'; ' if parts else ''}{doc.rank}. {mark}", Code(doc.id)]
        if doc.snippet:
            parts.append(f" {doc.snippet}")
    return tuple(parts) or ("",)


def save_movers_grid(changes: QueryChanges, data: "TaskData", path: str | Path) -> Path | None:
    """A thumbnail grid of the movers (losses first): query | top docs before | gap | top docs after.

    Frames follow :mod:`vembed_bench.report.grid`: grey query, green relevant, red not.
    Returns None when there is no mover to draw.
    """
    from vembed_bench.report.grid import GREEN, GREY, RED, save_rows

    lookup = _Lookup(data)
    rows = []
    for mover in changes.top_worsened + changes.top_improved:
        query = lookup.query(mover.query_id)
        if query is None:
            continue

        def tiles(docs: Sequence[RankedDoc]) -> list[Any]:
            cells: list[Any] = [None] * TOP_DOCUMENTS
            for slot, doc in enumerate(docs[:TOP_DOCUMENTS]):
                item = lookup.corpus.get(doc.id)
                cells[slot] = None if item is None else (item, GREEN if doc.relevant else RED)
            return cells

        rows.append([(query, GREY), *tiles(mover.before), None, *tiles(mover.after)])
    if not rows:
        return None
    return save_rows(rows, path, columns=2 + 2 * TOP_DOCUMENTS)


def has_images(data: "TaskData") -> bool:
    """True when any query or document of the task has an image."""
    return any(item.image is not None for item in [*data.queries, *data.corpus])


# -- guard tasks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardVerdict:
    """Did fine-tuning change a guard task's main metric beyond its 95% paired interval?"""

    task: str
    split: str
    delta: PairedDelta = field(repr=False)

    @property
    def status(self) -> str:
        """``forgetting`` (interval below 0), ``improved`` (above 0) or ``no significant change``."""
        if self.delta.ci_high < 0:
            return FORGETTING
        if self.delta.ci_low > 0:
            return IMPROVED
        return NO_CHANGE

    @property
    def forgetting(self) -> bool:
        return self.status == FORGETTING

    def line(self) -> str:
        """``forgetting: python_faq ndcg@10 -3.10 [-5.20, -1.10] (test, 89 queries)``."""
        d = self.delta
        return (f"{self.status}: {self.task} {d.metric} {fmt_delta(d.delta)} "
                f"[{fmt_delta(d.ci_low)}, {fmt_delta(d.ci_high)}] ({self.split}, {d.n_queries} queries)")

    def to_dict(self) -> dict[str, Any]:
        d = self.delta
        return {
            "task": self.task, "split": self.split, "metric": d.metric, "status": self.status,
            "forgetting": self.forgetting, "zero_shot": round(100 * d.base, 2),
            "fine_tuned": round(100 * d.tuned, 2), "delta_pp": round(100 * d.delta, 2),
            "ci_low_pp": round(100 * d.ci_low, 2), "ci_high_pp": round(100 * d.ci_high, 2),
            "p_value": d.p_value, "n_queries": d.n_queries, "confidence": d.confidence,
            "n_resamples": d.n_resamples, "seed": d.seed, "line": self.line(),
        }


def guard_verdict(base: "Result", tuned: "Result", *, seed: int = 0,
                  n_resamples: int = DEFAULT_RESAMPLES) -> GuardVerdict:
    """The verdict on a guard task's main metric (refuses results that are not comparable)."""
    from vembed_bench.report.comparison import comparability_problem

    problem = comparability_problem(base, tuned)
    if problem:
        raise VembedError(f"cannot compare {base.model} and {tuned.model} on {base.task}: {problem}")
    delta = paired_deltas(base, tuned, [base.main_metric], n_resamples=n_resamples, seed=seed)[0]
    return GuardVerdict(base.task, base.split, delta)


def verdict_blocks(verdicts: Sequence[GuardVerdict]) -> list[Block]:
    """The "Forgetting (guard tasks)" section: one line per guard task."""
    if not verdicts:
        return []
    flagged = sum(v.forgetting for v in verdicts)
    summary = (f"{flagged} of {len(verdicts)} guard task(s) show forgetting" if flagged
               else f"no forgetting on {len(verdicts)} guard task(s)")
    blocks: list[Block] = [
        Heading(2, "Forgetting (guard tasks)"),
        Para((f"{summary}: main metric, fine-tuned − zero-shot ×100, 95% paired bootstrap interval; "
              "forgetting = a drop whose interval excludes 0.",)),
    ]
    blocks += [Para((Bold(v.line()) if v.forgetting else v.line(),)) for v in verdicts]
    return blocks
