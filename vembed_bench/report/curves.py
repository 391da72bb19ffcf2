"""Recall@K curves with per-point 95% bootstrap bands, as numbers (the plots draw them).

Each point is a system's mean ``family@K`` over the queries; its band is the
percentile bootstrap interval of that mean, resampling queries with
replacement (:func:`vembed_bench.report.stats.paired_bootstrap_ci` on the
``(queries, K values)`` matrix of one system, so every K of a curve shares the
resampled query sets). The seed is the leaderboard's, so bands are
reproducible. Values are rounded to six decimals before anything draws or
writes them: the last bits of a computed mean may differ between machines,
six decimals do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vembed_bench.report.stats import DEFAULT_RESAMPLES, paired_bootstrap_ci
from vembed_bench.results import Result

__all__ = ["CURVE_FAMILIES", "Curve", "curve_family", "curve_ks", "recall_curve"]

CURVE_FAMILIES = ("recall", "hit")
_DECIMALS = 6


@dataclass(frozen=True)
class Curve:
    """One system's ``family@K`` against K, with the 95% band of each point (scores 0..1)."""

    label: str
    ks: tuple[int, ...]
    values: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]


def curve_family(main_metric: str) -> str:
    """``recall`` or ``hit``: the main metric's family when it is one of them (image tasks rank
    by hit@K, the SOP "Recall@K"), else ``recall``."""
    family = main_metric.split("@")[0]
    return family if family in CURVE_FAMILIES else "recall"


def curve_ks(family: str, results: Sequence[Result]) -> list[int]:
    """Every K at which some result has a ``family@K`` score."""
    pattern = re.compile(rf"{re.escape(family)}@(\d+)")
    return sorted(
        {int(m.group(1)) for r in results for name in r.scores if (m := pattern.fullmatch(name))}
    )


def _rounded(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in np.round(np.asarray(values, dtype=np.float64), _DECIMALS))


def recall_curve(
    label: str,
    result: Result,
    family: str,
    ks: Sequence[int],
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> Curve | None:
    """The curve of one result at the ``ks`` it has; ``None`` when it has none.

    A point whose per-query values are missing (an older record) gets no band
    (low = high = the point).
    """
    names = [(k, f"{family}@{k}") for k in ks if f"{family}@{k}" in result.scores]
    if not names:
        return None
    values = np.array([result.scores[name] for _, name in names], dtype=np.float64)
    per_query = result.per_query.per_query
    low, high = values.copy(), values.copy()
    with_queries = [j for j, (_, name) in enumerate(names) if len(per_query.get(name, ())) > 0]
    if with_queries:
        matrix = np.column_stack(
            [np.asarray(per_query[names[j][1]], dtype=np.float64) for j in with_queries]
        )
        lo, hi = paired_bootstrap_ci(matrix, n_resamples=n_resamples, seed=seed)
        low[with_queries], high[with_queries] = lo, hi
    return Curve(
        label=label,
        ks=tuple(k for k, _ in names),
        values=_rounded(values),
        low=_rounded(low),
        high=_rounded(high),
    )
