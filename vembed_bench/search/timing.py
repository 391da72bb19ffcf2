"""Search latency and throughput, measured the same way for every variant of a trade-off study.

- **Latency** (batch 1): each query of a seeded sample is searched alone and
  timed with :func:`time.perf_counter`, after ``warmup`` untimed searches (caches,
  lazily allocated buffers, thread pools); garbage collection is paused while
  timing. p50 and p99 are :func:`numpy.percentile` (linear interpolation) of the
  per-query times, so with fewer than 100 queries p99 is close to the slowest.
- **Throughput** (batch): all queries in one search call, after one untimed call,
  repeated until at least ``min_seconds`` and ``min_calls`` calls; queries/s is
  the number of queries over the median call time.

What is timed is the search only (query quantisation, index search, rescoring
and ordering), not the encoding of the query. The thread count is faiss's
OpenMP pool (:func:`faiss_threads` can set it for the measurement).
"""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

LATENCY_QUERIES = 200
WARMUP = 10
BATCH_SECONDS = 0.2
MIN_BATCH_CALLS = 3

Search = Callable[[np.ndarray, "np.ndarray | None"], Any]
"""A search of some query rows, with their excluded corpus rows (None: none)."""


def _rows(values: np.ndarray | None, rows: Any) -> np.ndarray | None:
    return None if values is None else values[rows]


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def latency(search: Search, queries: np.ndarray, exclude: np.ndarray | None, rows: np.ndarray,
            warmup: int = WARMUP) -> dict[str, Any]:
    """Batch-1 search times of the queries at ``rows`` (milliseconds): p50, p99, mean, min, max."""
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return {"queries": 0, "warmup": 0}
    for i in range(warmup):
        row = rows[i % rows.size]
        search(queries[row:row + 1], _rows(exclude, slice(row, row + 1)))
    times = np.empty(rows.size)
    with _no_gc():
        for position, row in enumerate(rows):
            q, excl = queries[row:row + 1], _rows(exclude, slice(row, row + 1))
            start = time.perf_counter()
            search(q, excl)
            times[position] = time.perf_counter() - start
    ms = times * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "queries": int(rows.size), "warmup": int(warmup)}


def throughput(search: Search, queries: np.ndarray, exclude: np.ndarray | None, *,
               min_seconds: float = BATCH_SECONDS, min_calls: int = MIN_BATCH_CALLS) -> dict[str, Any]:
    """Queries per second of one search call over all ``queries`` (median of repeated calls)."""
    n = int(queries.shape[0])
    if n == 0:
        return {"batch": 0, "calls": 0}
    search(queries, exclude)
    times: list[float] = []
    with _no_gc():
        while len(times) < min_calls or sum(times) < min_seconds:
            start = time.perf_counter()
            search(queries, exclude)
            times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"qps": n / median if median > 0 else None, "batch": n, "calls": len(times),
            "median_call_ms": median * 1000}


@contextmanager
def faiss_threads(threads: int | None) -> Iterator[int]:
    """Run the block with faiss's OpenMP pool at ``threads`` (None: as it is); yields the count used."""
    import faiss

    before = faiss.omp_get_max_threads()
    if threads:
        faiss.omp_set_num_threads(int(threads))
    try:
        yield int(faiss.omp_get_max_threads())
    finally:
        faiss.omp_set_num_threads(before)
