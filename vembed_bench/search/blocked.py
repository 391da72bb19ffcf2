"""Exact search over a corpus that need not be in memory: blocks of rows, one running top-k.

The embedding cache returns large matrices as read-only ``np.memmap`` views of
their verified files. Such a corpus is searched block by block: each block of
rows goes to the backend's in-memory flat search, which returns that block's
exact top-k in the shared order (score descending, then lower position), and
the blocks' answers are folded into a running top-k per query with the sort
keys of :mod:`.topk`. The global top-k is a subset of the union of the blocks'
top-k and keys are unique, so the merge gives exactly the answer of one search
over the whole corpus, ties across block boundaries included.

Once a block is searched its pages are handed back to the operating system
(``madvise(MADV_DONTNEED)``: they stay in the page cache, so nothing is read
from disk again, but they leave this process's resident set). The memory of a
search is then the queries, one block, the backend's score buffers and the
top-k, not the corpus.
"""

from __future__ import annotations

import mmap
from typing import Any, Callable, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.base import SearchInputs, check_finite, positive_int_option

BLOCK_OPTIONS = ("block_mb", "block_rows")
"""``block_mb``: corpus bytes per block when the corpus is memory-mapped; ``block_rows``:
rows per block, which also blocks a corpus in memory (for tests and benchmarks)."""
DEFAULT_BLOCK_MB = 256
MERGE_ROWS = 65536
"""Queries merged at once, bounding the temporary (rows, 2k) key array."""

BlockSearch = Callable[
    [np.ndarray, np.ndarray, int, "np.ndarray | None", "list[np.ndarray] | None"],
    tuple[np.ndarray, np.ndarray],
]
"""``(queries, block, k, exclude, candidates) -> (scores, indices)``: the exact top-k of one
block, positions local to it; ``exclude`` and ``candidates`` are local too (None: none)."""


def memory_map_of(array: Any) -> mmap.mmap | None:
    """The ``mmap`` an array's memory belongs to (through views and ``np.memmap``), or None."""
    obj, depth = array, 0
    while obj is not None and depth < 64:
        if isinstance(obj, mmap.mmap):
            return obj
        if isinstance(obj, np.memmap) and isinstance(getattr(obj, "_mmap", None), mmap.mmap):
            return obj._mmap
        obj, depth = getattr(obj, "base", None), depth + 1
    return None


def is_memory_mapped(array: Any) -> bool:
    """Whether ``array`` is (a view of) a memory-mapped file."""
    return memory_map_of(array) is not None


def rows_per_block(corpus: Any, options: dict[str, Any]) -> int | None:
    """Corpus rows per block, or None to search the corpus whole.

    ``block_rows`` is taken as given; otherwise a memory-mapped corpus larger
    than ``block_mb`` (default :data:`DEFAULT_BLOCK_MB`) is blocked, and a
    corpus already in memory is searched whole (blocking it would save nothing).
    """
    shape = np.shape(corpus)
    if len(shape) != 2:
        return None  # check_inputs reports the shape
    n, dim = shape
    mb = options.get("block_mb", DEFAULT_BLOCK_MB)
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not mb > 0:
        raise VembedError(f"search option block_mb must be a positive number, got {mb!r}")
    if "block_rows" in options:
        rows = positive_int_option(options, "block_rows", 1)
    elif is_memory_mapped(corpus):
        rows = max(1, int(mb * 2**20) // max(1, 4 * dim))
    else:
        return None
    return rows if rows < n else None


def search_in_blocks(inp: SearchInputs, k: int, rows: int, block_search: BlockSearch) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` ``(scores, indices)`` of ``inp`` by searching ``rows`` corpus rows at a time.

    Each block's values are checked (NaN/inf) as it is read; ``inp`` should come
    from ``check_inputs(..., check_corpus_values=False)``.
    """
    n, nq = inp.n_corpus, inp.n_queries
    running = np.full((nq, k), tk.PAD, dtype=np.uint64)
    for c0 in range(0, n, rows):
        c1 = min(n, c0 + rows)
        block = inp.corpus[c0:c1]
        check_finite(block, "corpus")
        cands = local_candidates(inp.candidates, c0, c1) if inp.candidates is not None else None
        excl = None if cands is not None else local_exclude(inp.exclude, c0, c1)
        longest = c1 - c0 if cands is None else max((len(c) for c in cands), default=0)
        width = min(k, longest)
        if width > 0:
            scores, indices = block_search(inp.queries, block, width, excl, cands)
            merge_block(running, scores, indices, c0, k)
        release_rows(inp.corpus, c0, c1)
    return tk.unpack_keys(np.sort(running, axis=1))


def merge_block(running: np.ndarray, scores: np.ndarray, indices: np.ndarray, offset: int, k: int) -> None:
    """Fold one block's top-k (positions local to the block) into the running keys, in place."""
    for r0 in range(0, running.shape[0], MERGE_ROWS):
        rows = slice(r0, r0 + MERGE_ROWS)
        ids = indices[rows]
        valid = ids >= 0
        keys = tk.pack_keys(scores[rows], np.where(valid, ids + offset, 0))
        keys[~valid] = tk.PAD
        running[rows] = tk.smallest_keys(np.concatenate([running[rows], keys], axis=1), k, sort=False)


def local_exclude(exclude: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    """``exclude`` as positions within rows ``[start, stop)`` (-1 outside), or None if none fall in."""
    if exclude is None:
        return None
    inside = (exclude >= start) & (exclude < stop)
    if not inside.any():
        return None
    return np.where(inside, exclude - start, -1)


def local_candidates(candidates: Sequence[np.ndarray], start: int, stop: int) -> list[np.ndarray]:
    """Each query's (sorted) candidate positions within rows ``[start, stop)``, made local."""
    out = []
    for positions in candidates:
        lo, hi = np.searchsorted(positions, (start, stop))
        out.append(positions[lo:hi] - start)
    return out


def release_rows(array: np.ndarray, start: int, stop: int) -> None:
    """Drop the pages of rows ``[start, stop)`` of a memory-mapped array from this process.

    They stay in the page cache (a later read costs a page fault, not a disk
    read). A no-op for arrays in memory and where ``madvise`` is unavailable.
    """
    mm = memory_map_of(array)
    if mm is None or stop <= start or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        base = np.frombuffer(mm, dtype=np.uint8).__array_interface__["data"][0]
        first = array.__array_interface__["data"][0] + start * array.strides[0] - base
        last = first + (stop - start) * array.strides[0]
        page = mmap.PAGESIZE
        lo = max(0, first // page * page)
        hi = min(len(mm), -(-last // page) * page)
        if hi > lo:
            mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    except (OSError, ValueError, TypeError):  # best effort: only the memory figure depends on it
        return


def check_finite_in_blocks(array: np.ndarray, what: str = "corpus", rows: int = 65536) -> None:
    """:func:`check_finite` a block of rows at a time, releasing each block's pages: a mapped
    matrix is checked without ever being resident whole."""
    for start in range(0, array.shape[0], rows):
        check_finite(array[start : start + rows], what)
        release_rows(array, start, start + rows)


def block_info(rows: int | None, n: int, corpus: Any) -> dict[str, Any]:
    """What a result file records about where the corpus was read from (``rows``: per block,
    None when searched whole): nothing for a whole corpus in memory."""
    mapped = {"memory_mapped": True} if is_memory_mapped(corpus) else {}
    if rows is None:
        return mapped
    return {"corpus_blocks": -(-n // rows), "block_rows": rows, "memory_mapped": bool(mapped)}
