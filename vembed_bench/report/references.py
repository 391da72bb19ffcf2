"""Ours against the published number: the difference, its interval, and whether it reproduces.

For each metric the reference publishes and the result computed, the difference is
ours minus published, and its 95% interval is a percentile bootstrap over the
result's queries (the published number is a constant: the interval is that of our
mean, shifted). An interval that excludes 0 means the setup does not reproduce the
published score (a different checkpoint, preprocessing, split or metric convention);
one that contains it means the run is consistent with it. Suite scores (Rsum, the
MMEB averages) have no per-query values here: their difference is given without an
interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vembed_bench.data.references import Reference
from vembed_bench.report.stats import paired_bootstrap_ci

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
