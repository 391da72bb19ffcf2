"""Pure-numpy exact search: blocked BLAS matmul + threshold pre-filter + key selection.

Why not ``argpartition`` on each score block: it costs about as much per score as
the matmul itself at d=384 and is single-threaded. Instead each block is
compared against a per-query threshold that is a *lower bound* of the final
k-th best score (the k-th best kept so far; the first, small "seed" block uses
its own k-th best); only the few scores that pass are packed into sort keys and
merged. Rows where the bound is weak (many ties) fall back to a dense
selection, so the result is always exact. Memory is the score block plus a
mask of the same shape, sized from ``memory_mb``.
"""

from __future__ import annotations

import os
import platform
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.blocked import BLOCK_OPTIONS, block_info, rows_per_block, search_in_blocks
from vembed_bench.search.base import (
    SearchResult,
    check_inputs,
    empty_result,
    make_result,
    memory_budget_bytes,
    positive_int_option,
    require_exact,
)

OPTIONS = ("memory_mb", "query_block", *BLOCK_OPTIONS)
SEED_WIDTH = 4096
"""Minimum corpus rows in the first block of each query block, whose k-th best
score per query seeds the threshold; kept small because it is found by a full
``np.partition`` (later blocks only compare against the running k-th best)."""
QUERY_BLOCK = 1024
"""Queries per matmul: large enough for BLAS efficiency, small enough for wide blocks."""


def block_shape(n_queries: int, n_corpus: int, budget_bytes: int, query_block: int = QUERY_BLOCK) -> tuple[int, int]:
    """(query rows, corpus rows) per score block: 5 bytes per score (float32 + mask)."""
    per_score = 5
    qb = max(1, min(n_queries, query_block))
    cb = max(1, min(n_corpus, budget_bytes // (per_score * qb)))
    if cb < min(n_corpus, 1024):
        # A tiny budget: keep corpus blocks wide enough for BLAS, shrink the query block.
        cb = min(n_corpus, 1024)
        qb = max(1, min(qb, budget_bytes // (per_score * cb)))
    return qb, cb


def corpus_blocks(n: int, cb: int, k: int) -> list[tuple[int, int]]:
    """(start, size) of corpus blocks: a small seed block, then doubling up to ``cb``.

    A block is filtered by the k-th best score of the rows *before* it, so about
    ``k * size / rows_seen`` of its scores pass per query; doubling keeps that
    near k per block instead of ``k * cb / seed`` for the first full block.
    """
    seed = min(n, cb, max(SEED_WIDTH, 16 * k))
    blocks = [(0, seed)]
    c0 = seed
    while c0 < n:
        c = min(cb, c0, n - c0)
        blocks.append((c0, c))
        c0 += c
    return blocks


def _merge_block(
    scores: np.ndarray, col0: int, running: np.ndarray, k: int, mask_buf: np.ndarray, budget_bytes: int
) -> np.ndarray:
    """Fold one (b, c) score block into the running top-k keys (b, k), in place."""
    b, c = scores.shape
    thresh = tk.worst_kept_score(running)
    need = np.flatnonzero(thresh == -np.inf)
    if need.size and c > k:
        # No bound yet (first block): the block's own k-th best score is one.
        rows_needing = scores if need.size == b else scores[need]
        seed = np.partition(rows_needing, c - k, axis=1)[:, c - k]
        thresh[need] = np.maximum(thresh[need], seed)

    mask = mask_buf[: b * c].reshape(b, c)
    np.greater_equal(scores, thresh[:, None], out=mask)
    flat = np.flatnonzero(mask)
    if flat.size == 0:
        return running
    rows = flat // c
    counts = np.bincount(rows, minlength=b)

    # Pool rows are (k + most survivors) keys of 8 bytes; past half a block or
    # the budget, selecting the row densely is cheaper and bounded.
    cap = max(4 * k, min(c // 2, budget_bytes // (16 * b) - k))
    heavy = counts > cap
    if heavy.any():
        # Weak bound (ties or adversarial order): select these rows densely.
        heavy_rows = np.flatnonzero(heavy)
        cols = np.arange(col0, col0 + c, dtype=np.int64)
        chunk = max(1, budget_bytes // (16 * c))
        for i in range(0, heavy_rows.size, chunk):
            hr = heavy_rows[i : i + chunk]
            block_keys = tk.pack_keys(scores[hr], np.broadcast_to(cols, (hr.size, c)))
            running[hr] = tk.smallest_keys(np.concatenate([running[hr], block_keys], axis=1), k, sort=False)
        keep = ~heavy[rows]
        flat, rows = flat[keep], rows[keep]
        counts[heavy] = 0
        if flat.size == 0:
            return running

    touched = np.flatnonzero(counts)
    slot = np.zeros(b, dtype=np.int64)
    slot[touched] = np.arange(touched.size)
    starts = np.cumsum(counts) - counts
    rank = np.arange(flat.size) - starts[rows]
    keys = tk.pack_keys(scores.ravel()[flat], flat - rows * c + col0)
    pool = np.full((touched.size, k + int(counts.max())), tk.PAD, dtype=np.uint64)
    pool[:, :k] = running[touched]
    pool[slot[rows], k + rank] = keys
    running[touched] = tk.smallest_keys(pool, k, sort=False)
    return running


def exact_search_numpy(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    exclude: np.ndarray | None,
    budget_bytes: int,
    query_block: int = QUERY_BLOCK,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k ``(scores, indices)`` by blocked matmul; never holds nq x n scores.

    BLAS is idle while a block is filtered, so the filter runs on ``threads``
    row slices at once (numpy releases the GIL in the heavy calls).
    """
    nq, n = queries.shape[0], corpus.shape[0]
    qb, cb = block_shape(nq, n, budget_bytes, query_block)
    threads = max(1, min(threads or _default_threads(), qb // 64 or 1))
    score_buf = np.empty(qb * cb, dtype=np.float32)
    mask_buf = np.empty(qb * cb, dtype=bool)
    out = np.empty((nq, k), dtype=np.uint64)
    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        for q0 in range(0, nq, qb):
            q = queries[q0 : q0 + qb]
            b = q.shape[0]
            running = np.full((b, k), tk.PAD, dtype=np.uint64)
            excl = exclude[q0 : q0 + b] if exclude is not None else None
            bounds = np.linspace(0, b, min(threads, b) + 1).astype(int)
            slices = [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
            for c0, c in corpus_blocks(n, cb, k):
                scores = score_buf[: b * c].reshape(b, c)
                np.matmul(q, corpus[c0 : c0 + c].T, out=scores)
                if excl is not None:
                    hit = np.flatnonzero((excl >= c0) & (excl < c0 + c))
                    scores[hit, excl[hit] - c0] = -np.inf

                def merge(lo: int, hi: int, c0: int = c0, c: int = c, scores: np.ndarray = scores) -> None:
                    # Slices are views: _merge_block updates `running` rows in place.
                    _merge_block(
                        scores[lo:hi], c0, running[lo:hi], k, mask_buf[lo * c : hi * c], budget_bytes // len(slices)
                    )

                if pool is None or len(slices) == 1:
                    merge(0, b)
                else:
                    for future in [pool.submit(merge, lo, hi) for lo, hi in slices]:
                        future.result()
            out[q0 : q0 + b] = np.sort(running, axis=1)
    finally:
        if pool is not None:
            pool.shutdown()
    return tk.unpack_keys(out)


def _default_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _blas_info() -> dict[str, Any]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # optional: provenance only
        return {}
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            return {
                "blas": f"{pool.get('internal_api')} {pool.get('version')}",
                "threads": pool.get("num_threads"),
            }
    return {}


class NumpyBackend:
    """Exact search with numpy only; always available."""

    name = "numpy"

    @classmethod
    def available(cls) -> bool:
        return True

    @classmethod
    def create(cls, device: str | None = None) -> "NumpyBackend":
        """The CPU backend; any other device is a one-line error."""
        if device not in (None, "cpu"):
            raise VembedError(f"search backend 'numpy' runs on the CPU only, got device {device!r}")
        return cls(device)

    def __init__(self, device: str | None = None) -> None:
        # Only the CPU exists for numpy; create() rejects other devices.
        self.device = "cpu"

    def search(
        self,
        queries: np.ndarray,
        corpus: np.ndarray,
        k: int,
        *,
        index: str = "flat",
        exclude: np.ndarray | None = None,
        candidates: Sequence[np.ndarray] | None = None,
        **index_options: Any,
    ) -> SearchResult:
        require_exact(self.name, index, index_options, OPTIONS)
        budget = memory_budget_bytes(index_options)
        query_block = positive_int_option(index_options, "query_block", QUERY_BLOCK)
        rows = rows_per_block(corpus, index_options)
        inp = check_inputs(queries, corpus, k, exclude, candidates, check_corpus_values=rows is None)
        if inp.n_corpus == 0 or inp.n_queries == 0:
            return empty_result(inp.n_queries, inp.k, self.name, "flat", True)

        def flat(q: np.ndarray, x: np.ndarray, kk: int, excl: np.ndarray | None,
                 cands: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
            if cands is not None:
                return tk.search_candidates_numpy(q, x, cands, kk, budget)
            return exact_search_numpy(q, x, kk, excl, budget, query_block)

        if rows is None:
            scores, indices = flat(inp.queries, inp.corpus, inp.k_work, inp.exclude, inp.candidates)
        else:
            scores, indices = search_in_blocks(inp, inp.k_work, rows, flat)
        return make_result(scores, indices, inp.k, self.name, "flat", True, block_info(rows, inp.n_corpus, corpus))

    def describe(self, index: str = "flat") -> dict[str, Any]:
        return {
            "backend": self.name,
            "library": f"numpy {np.__version__}",
            "device": f"cpu ({platform.machine()})",
            "index": "flat",
            "exact": True,
            **_blas_info(),
        }
