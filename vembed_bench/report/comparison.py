"""Whether two results may share a column, and the zero-shot -> fine-tuned table.

Two numbers for "the same task" are only comparable when they were computed
on the same data (data fingerprint), at the same cutoffs and with the same
metric definitions; otherwise a leaderboard would rank apples against
oranges. :func:`comparability_problem` says why two results differ, and every
report uses it.

:func:`comparison_table` is the one delta table of the project: the training
flow (issue 5), ``vembed-bench compare`` and the leaderboard's training-run
pages all print it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Sequence

from vembed_bench.errors import VembedError
from vembed_bench.report.document import (
    Block,
    Bold,
    Cell,
    Code,
    Para,
    Table,
    fmt_delta,
    fmt_p,
    fmt_score,
    to_markdown,
)
from vembed_bench.report.stats import DEFAULT_RESAMPLES, PairedDelta, paired_deltas

if TYPE_CHECKING:
    from pathlib import Path

    from vembed_bench.results import Result

__all__ = [
    "NOT_SIGNIFICANT_MARK",
    "comparability_key",
    "comparability_problem",
    "comparison_blocks",
    "comparison_table",
    "delta_cells",
]

NOT_SIGNIFICANT_MARK = "°"
"""Appended to a delta whose 95% interval contains zero."""


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def comparability_key(result: "Result") -> tuple:
    """What must be equal for two results of one task split to share a column."""
    return (
        str(result.task_info.get("data_fingerprint", "")),
        tuple(sorted(int(k) for k in result.k_values)),
        _canonical(result.metric_definitions),
        result.main_metric,
    )


def comparability_problem(reference: "Result", other: "Result") -> str | None:
    """``None`` when the results are comparable, else a one-line reason naming what differs."""
    reasons = []
    if (reference.task, reference.split) != (other.task, other.split):
        reasons.append(
            f"different task ({other.task}/{other.split} vs {reference.task}/{reference.split})"
        )
    fp_ref = str(reference.task_info.get("data_fingerprint", ""))
    fp_other = str(other.task_info.get("data_fingerprint", ""))
    if fp_ref != fp_other:
        detail = f"fingerprint {fp_other[:8] or 'none'} vs {fp_ref[:8] or 'none'}"
        n_ref, n_other = reference.task_info.get("n_queries"), other.task_info.get("n_queries")
        if n_ref != n_other:
            detail += f", {n_other} vs {n_ref} queries"
        if other.limit != reference.limit:
            detail += f", limit {other.limit} vs {reference.limit}"
        reasons.append(f"different data ({detail})")
    k_ref, k_other = sorted(reference.k_values), sorted(other.k_values)
    if k_ref != k_other:
        reasons.append(f"different K values ({k_other} vs {k_ref})")
    if reference.metric_definitions != other.metric_definitions:
        names = sorted(
            name
            for name in set(reference.metric_definitions) | set(other.metric_definitions)
            if reference.metric_definitions.get(name) != other.metric_definitions.get(name)
        )
        reasons.append(f"different metric definitions ({', '.join(names)})")
    if reference.main_metric != other.main_metric:
        reasons.append(f"different main metric ({other.main_metric} vs {reference.main_metric})")
    return "; ".join(reasons) or None


def delta_cells(delta: PairedDelta) -> list[Cell]:
    """Δ, its interval and p-value as table cells; ° marks an interval containing 0."""
    mark = f" {NOT_SIGNIFICANT_MARK}" if delta.ci_contains_zero else ""
    return [
        Cell(fmt_delta(delta.delta) + mark, sort=delta.delta),
        Cell(f"[{fmt_delta(delta.ci_low)}, {fmt_delta(delta.ci_high)}]", sort=delta.ci_low),
        Cell(fmt_p(delta.p_value), sort=delta.p_value),
    ]


def method_note(seed: int, n_resamples: int, confidence: float = 0.95) -> str:
    return (
        f"Paired over the same queries: {round(confidence * 100)}% percentile bootstrap interval "
        f"({n_resamples:,} resamples, seed {seed}) and two-sided sign-flip permutation p-value; "
        f"{NOT_SIGNIFICANT_MARK} marks a delta whose interval contains 0."
    )


def _system(label: str, result: "Result") -> tuple:
    named = () if label == result.model else (f"{label} ",)
    return (*named, Code(result.model), f" ({result.embedding_dim}-d)")


def comparison_blocks(
    base: "Result",
    tuned: "Result",
    *,
    base_label: str = "zero-shot",
    tuned_label: str = "fine-tuned",
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    table_id: str | None = None,
) -> list[Block]:
    """The comparison as document blocks (a caption and one table); see :func:`comparison_table`."""
    problem = comparability_problem(base, tuned)
    if problem:
        raise VembedError(
            f"cannot compare {base.model} and {tuned.model} on {base.task}: {problem}"
        )
    deltas = paired_deltas(base, tuned, metrics, n_resamples=n_resamples, seed=seed)
    caption = Para(
        (
            Bold(base.task),
            f" ({base.split}) · {deltas[0].n_queries} queries · ",
            *_system(base_label, base),
            " → ",
            *_system(tuned_label, tuned),
            f". Scores ×100; Δ = {tuned_label} − {base_label}. ",
            method_note(seed, n_resamples),
        )
    )
    rows = []
    for delta in deltas:
        main = delta.metric == base.main_metric
        rows.append(
            [
                Cell(delta.metric, sort=delta.metric, bold=main),
                Cell(fmt_score(delta.base), sort=delta.base),
                Cell(fmt_score(delta.tuned), sort=delta.tuned),
                *delta_cells(delta),
            ]
        )
    table = Table(
        columns=["metric", base_label, tuned_label, "Δ", "95% CI", "p"],
        rows=rows,
        numeric=[False, True, True, True, False, True],
        table_id=table_id,
    )
    return [caption, table]


def comparison_table(
    base: "Result",
    tuned: "Result",
    *,
    base_label: str = "zero-shot",
    tuned_label: str = "fine-tuned",
    metrics: Sequence[str] | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> str:
    """Markdown: one row per metric (main metric first, in bold) with both scores and the delta.

    Each delta ``tuned - base`` comes with a paired bootstrap 95% interval and
    a paired permutation p-value over per-query scores aligned by query id.
    Raises :class:`VembedError` when the results are not comparable (other
    task, data, K values or metric definitions) or were scored on different
    queries. Deterministic for a given ``seed``.
    """
    blocks = comparison_blocks(
        base,
        tuned,
        base_label=base_label,
        tuned_label=tuned_label,
        metrics=metrics,
        seed=seed,
        n_resamples=n_resamples,
    )
    return to_markdown(blocks, _here())


def _here() -> "Path":
    from pathlib import Path

    return Path(".")


def matryoshka_table(rows: Sequence[dict]) -> str:
    """A training run's score-vs-size trade-off: one row per (task, dimension), main metric only.

    ``rows`` are ``comparison.json`` rows (task, split, dim, metric, zero_shot,
    fine_tuned, delta_pp); each task's main metric is its first row's metric.
    """
    lines = [
        "## Matryoshka dimensions (main metric, scores x100)\n",
        "| task | metric | dim | zero-shot | fine-tuned | Δ |",
        "|---|---|--:|--:|--:|--:|",
    ]
    main: dict[tuple[str, str], str] = {}
    for row in rows:
        main.setdefault((row["task"], row["split"]), row["metric"])  # main metric comes first
    for row in sorted(rows, key=lambda r: (r["task"], -r["dim"])):
        if row["metric"] == main[(row["task"], row["split"])]:
            lines.append(
                f"| {row['task']} | {row['metric']} | {row['dim']} | {row['zero_shot']:.2f} | "
                f"{row['fine_tuned']:.2f} | {row['delta_pp']:+.2f} |"
            )
    return "\n".join(lines) + "\n"
