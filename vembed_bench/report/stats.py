"""Paired uncertainty for the difference between two results on the same queries.

A delta between two systems is only worth printing with its uncertainty, and
the uncertainty must respect the pairing: both systems answered the same
queries, and most of the spread between queries (easy vs hard questions) is
shared. So both procedures here work on the per-query differences
``d_i = tuned_i - base_i``, aligned by query id:

* a paired **bootstrap** percentile interval: resample queries with
  replacement, take the mean difference, read the 2.5 / 97.5 percentiles;
* a paired **permutation** (sign-flip) test: under "no difference" each
  ``d_i`` is as likely to be ``-d_i``; the two-sided p-value follows
  ``scipy.stats.permutation_test(..., permutation_type="samples")``
  conventions exactly (exact enumeration when ``2**n <= n_resamples``, the
  +1 correction otherwise, twice the smaller one-sided p, the same float
  tolerance), so the numbers can be checked against scipy.

Both are vectorised over resamples *and* metrics: one resample matrix
(counts of each query, or signs) is drawn per chunk and multiplied with the
``(n_queries, n_metrics)`` difference matrix, so all metrics of a comparison
cost one matrix product per chunk. Results are reproducible from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vembed_bench.errors import VembedError

if TYPE_CHECKING:
    from vembed_bench.metrics import MetricScores
    from vembed_bench.results import Result

__all__ = [
    "DEFAULT_RESAMPLES",
    "PairedDelta",
    "align_queries",
    "bootstrap_means",
    "paired_bootstrap_ci",
    "paired_deltas",
    "paired_permutation_pvalue",
]

DEFAULT_RESAMPLES = 10_000
_CHUNK_ELEMENTS = 4_000_000
"""Resample-matrix entries per chunk (32 MB of float64): bounds memory for large query sets."""


@dataclass(frozen=True)
class PairedDelta:
    """``tuned - base`` on one metric, with its paired 95% interval and p-value."""

    metric: str
    base: float
    tuned: float
    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    n_queries: int
    n_resamples: int
    confidence: float
    seed: int

    @property
    def ci_contains_zero(self) -> bool:
        """True when the interval does not exclude "no difference"."""
        return self.ci_low <= 0.0 <= self.ci_high


def _as_matrix(diffs: np.ndarray) -> tuple[np.ndarray, bool]:
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim not in (1, 2):
        raise ValueError(
            f"differences must be 1-D (queries) or 2-D (queries, metrics), got shape {d.shape}"
        )
    if d.shape[0] == 0:
        raise ValueError("no per-query differences: both results need at least one query")
    if not np.all(np.isfinite(d)):
        raise ValueError("per-query differences contain NaN or infinity")
    return (d[:, None], True) if d.ndim == 1 else (d, False)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """Independent, reproducible streams: the bootstrap (0), the permutation test (1), and
    further keys for callers that need several independent bootstraps (see :mod:`.ranks`)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=stream))


def _chunks(total: int, n: int) -> list[tuple[int, int]]:
    size = max(1, min(total, _CHUNK_ELEMENTS // max(n, 1)))
    return [(start, min(size, total - start)) for start in range(0, total, size)]


def bootstrap_means(
    values: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    stream: tuple[int, ...] = (0,),
) -> np.ndarray:
    """Column means of ``values`` ``(n_queries, k)`` over ``n_resamples`` bootstrap resamples.

    Each resample draws ``n_queries`` query indices with replacement, shared by all columns,
    so the columns stay paired (differences of columns are bootstrap differences). Returns
    ``(n_resamples, k)``. ``stream`` picks an independent random stream of ``seed``: the
    default is the one :func:`paired_bootstrap_ci` uses.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    d, _ = _as_matrix(values)
    n = d.shape[0]
    rng = _rng(seed, *stream)
    means = np.empty((n_resamples, d.shape[1]), dtype=np.float64)
    for start, size in _chunks(n_resamples, n):
        idx = rng.integers(0, n, size=(size, n))
        # How often each query was drawn, so that the means are one matrix product
        # (row-wise bincount into a float buffer: about twice as fast as one flat bincount).
        counts = np.empty((size, n), dtype=np.float64)
        for row in range(size):
            counts[row] = np.bincount(idx[row], minlength=n)
        means[start : start + size] = counts @ d / n
    return means


def paired_bootstrap_ci(
    diffs: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean of paired differences.

    ``diffs`` is ``(n_queries,)`` or ``(n_queries, n_metrics)``; each
    resample draws ``n_queries`` query indices with replacement, shared by all
    metrics (so the metrics' intervals come from the same resampled query
    sets). Returns ``(low, high)``: floats for 1-D input, arrays for 2-D.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d, squeeze = _as_matrix(diffs)
    means = bootstrap_means(d, n_resamples=n_resamples, seed=seed)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return (float(low[0]), float(high[0])) if squeeze else (low, high)


def paired_permutation_pvalue(
    diffs: np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> float | np.ndarray:
    """Two-sided sign-flip permutation p-value of the mean of paired differences.

    Same definition as ``scipy.stats.permutation_test`` with
    ``permutation_type="samples"``, statistic ``mean(x - y)`` and
    ``alternative="two-sided"``: all ``2**n`` sign patterns when that is at
    most ``n_resamples`` (exact), else ``n_resamples`` random ones with the
    ``(count + 1) / (n_resamples + 1)`` correction.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    d, squeeze = _as_matrix(diffs)
    n = d.shape[0]
    observed = d.mean(axis=0)
    # scipy's tolerance: null values within 100 ulp of the observed count as equal.
    gamma = np.abs(np.finfo(np.float64).eps * 100 * observed)
    less = np.zeros(d.shape[1], dtype=np.int64)
    greater = np.zeros(d.shape[1], dtype=np.int64)

    def tally(signs: np.ndarray) -> None:
        null = signs @ d / n
        less[:] += np.count_nonzero(null <= observed + gamma, axis=0)
        greater[:] += np.count_nonzero(null >= observed - gamma, axis=0)

    exact = n < 63 and 2**n <= n_resamples
    if exact:
        total, adjustment = 2**n, 0
        for start, size in _chunks(total, n):
            codes = np.arange(start, start + size, dtype=np.int64)[:, None]
            bits = (codes >> np.arange(n, dtype=np.int64)) & 1
            tally(1.0 - 2.0 * bits)
    else:
        total, adjustment = n_resamples, 1
        rng = _rng(seed, 1)
        for _, size in _chunks(total, n):
            # One random bit per (resample, query), unpacked from random bytes (8x fewer draws).
            packed = rng.integers(0, 256, size=(size, (n + 7) // 8), dtype=np.uint8)
            bits = np.unpackbits(packed, axis=1, count=n)
            tally(1.0 - 2.0 * bits)
    p_less = (less + adjustment) / (total + adjustment)
    p_greater = (greater + adjustment) / (total + adjustment)
    p = np.clip(2.0 * np.minimum(p_less, p_greater), 0.0, 1.0)
    return float(p[0]) if squeeze else p


def align_queries(base: "MetricScores", tuned: "MetricScores") -> tuple[np.ndarray, np.ndarray]:
    """Positions that put both results' per-query arrays in the same query order.

    Refuses (``VembedError``) when the two query sets differ: a paired
    statistic over different queries would compare different questions.
    """
    base_ids, tuned_ids = list(base.query_ids), list(tuned.query_ids)
    base_set, tuned_set = set(base_ids), set(tuned_ids)
    if len(base_set) != len(base_ids) or len(tuned_set) != len(tuned_ids):
        raise VembedError("per-query scores list a query id twice; the result file is damaged")
    if base_set != tuned_set:
        only_base, only_tuned = sorted(base_set - tuned_set), sorted(tuned_set - base_set)
        example = (only_base or only_tuned)[0]
        raise VembedError(
            f"the two results were scored on different queries ({len(only_base)} only in the "
            f"first, {len(only_tuned)} only in the second, e.g. {example!r}); paired statistics "
            "need the same "
            "query set: evaluate both on the same task data without different --limit samples"
        )
    position = {qid: i for i, qid in enumerate(tuned_ids)}
    return np.arange(len(base_ids)), np.array([position[q] for q in base_ids], dtype=np.int64)


def paired_deltas(
    base: "Result",
    tuned: "Result",
    metrics: Sequence[str] | None = None,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[PairedDelta]:
    """``tuned - base`` on each metric (default: the base's metrics, main metric first).

    Means are recomputed from the aligned per-query values, so the delta is
    exactly the mean of the differences the interval and test are about.
    """
    if metrics is None:
        metrics = [base.main_metric] + [
            m for m in base.per_query.per_query if m != base.main_metric
        ]
    missing = [
        m
        for m in metrics
        if m not in base.per_query.per_query or m not in tuned.per_query.per_query
    ]
    if missing:
        raise VembedError(f"metric {missing[0]!r} has no per-query values in both results")
    bi, ti = align_queries(base.per_query, tuned.per_query)
    b = np.column_stack([base.per_query.per_query[m][bi] for m in metrics])
    t = np.column_stack([tuned.per_query.per_query[m][ti] for m in metrics])
    d = t - b
    low, high = paired_bootstrap_ci(d, n_resamples=n_resamples, confidence=confidence, seed=seed)
    p = paired_permutation_pvalue(d, n_resamples=n_resamples, seed=seed)
    return [
        PairedDelta(
            metric=m,
            base=float(b[:, j].mean()),
            tuned=float(t[:, j].mean()),
            delta=float(d[:, j].mean()),
            ci_low=float(low[j]),
            ci_high=float(high[j]),
            p_value=float(p[j]),
            n_queries=int(d.shape[0]),
            n_resamples=n_resamples,
            confidence=confidence,
            seed=seed,
        )
        for j, m in enumerate(metrics)
    ]
