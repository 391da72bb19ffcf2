"""Ours against the published number: the difference, its interval, and whether it reproduces.

For each metric the reference publishes and the result computed, the difference is
ours minus published, and its 95% interval is a percentile bootstrap over the
result's queries (the published number is a constant: the interval is that of our
mean, shifted). An interval that excludes 0 means the setup does not reproduce the
published score (a different checkpoint, preprocessing, split or metric convention);
one that contains it means the run is consistent with it. Suite scores (Rsum, the
MMEB averages) have no per-query values here: their difference is given without an
interval.

On a leaderboard, a task page lists every result that carries such a record in a
"Published references" table (:func:`published_table`), and marks its row with
:data:`REFERENCE_MARK`; the numbers are those stored in the result file, never
recomputed, so the page says what the run said.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.references import Reference
from vembed_bench.report.document import Cell, Link, Table, Url, fmt_delta, fmt_score
from vembed_bench.report.stats import paired_bootstrap_ci

REFERENCE_MARK = "†"
"""Beside a leaderboard row whose result carries a published reference."""
PUBLISHED_HEADING = "Published references"
PUBLISHED_FRAGMENT = "published-references"
"""GitHub's id for the heading :data:`PUBLISHED_HEADING` (what a Markdown link points at)."""
_VERDICTS = {"reproduces": "yes", "differs": "no", "no interval": "no interval"}

RESAMPLES = 2000
SEED = 0


def compare(result: Any, reference: Reference, *, seed: int = SEED, n_resamples: int = RESAMPLES) -> dict[str, Any]:
    """The record stored in ``result.reference``: the reference and one row per shared metric."""
    rows = []
    per_query = getattr(getattr(result, "per_query", None), "per_query", {}) or {}
    for metric, published in sorted(reference.scores.items()):
        if metric not in result.scores:
            continue
        ours = float(result.scores[metric])
        row: dict[str, Any] = {"metric": metric, "published": published, "ours": ours, "delta": ours - published,
                               "ci_low": None, "ci_high": None, "verdict": "no interval"}
        values = per_query.get(metric)
        if values is not None and len(values) > 1:
            low, high = paired_bootstrap_ci(np.asarray(values, dtype=np.float64) - published,
                                            n_resamples=n_resamples, seed=seed)
            row.update(ci_low=low, ci_high=high,
                       verdict="reproduces" if low <= 0.0 <= high else "differs")
        rows.append(row)
    return {**reference.to_dict(), "rows": rows, "method": f"95% percentile bootstrap over queries, "
            f"{n_resamples} resamples, seed {seed}"}


def reference_lines(record: dict[str, Any]) -> list[str]:
    """Console lines: one per metric, scores x100."""
    if not record or not record.get("rows"):
        return []
    lines = [f"published ({record['model']}, {record['source']}):"]
    for row in record["rows"]:
        interval = ("" if row["ci_low"] is None
                    else f" [{100 * row['ci_low']:+.2f}, {100 * row['ci_high']:+.2f}]")
        lines.append(f"  {row['metric']}: published {100 * row['published']:.2f}, ours {100 * row['ours']:.2f}, "
                     f"difference {100 * row['delta']:+.2f}{interval}: {row['verdict']}")
    return lines


def has_reference(result: Any) -> bool:
    """Whether the result carries a compared published score (a ``reference`` with rows)."""
    record = getattr(result, "reference", None)
    return bool(record and record.get("rows"))


def published_table(items: Sequence[tuple[str, Path, dict[str, Any]]], *, table_id: str) -> Table:
    """One row per metric of each ``(label, result path, reference record)``: the published
    model, published score, ours, ours minus published with its 95% interval, whether the
    interval contains 0 (reproduced), the source and the result file. Scores x100."""
    rows = []
    for label, path, record in items:
        url = str(record.get("url") or "")
        source = Url(str(record.get("source", "")), url) if url else str(record.get("source", ""))
        for row in record.get("rows", []):
            low, high = row.get("ci_low"), row.get("ci_high")
            interval = "" if low is None or high is None else f"[{fmt_delta(low)}, {fmt_delta(high)}]"
            rows.append([
                Cell(label, sort=label),
                Cell(str(record.get("model", ""))),
                Cell(str(row["metric"])),
                Cell(fmt_score(row["published"]), sort=row["published"]),
                Cell(fmt_score(row["ours"]), sort=row["ours"]),
                Cell(fmt_delta(row["delta"]), sort=row["delta"]),
                Cell(interval, sort=low),
                Cell(_VERDICTS.get(str(row.get("verdict")), str(row.get("verdict", "")))),
                Cell(source),
                Cell(Link("json", path)),
            ])
    return Table(
        columns=["model", "published as", "metric", "published", "ours", "difference", "95% CI",
                 "reproduced", "source", "result"],
        rows=rows,
        numeric=[False, False, False, True, True, True, False, False, False, False],
        table_id=table_id,
        export_omit=(9,),
    )
