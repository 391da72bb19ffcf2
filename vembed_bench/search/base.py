"""The search protocol, its result type, and the input checks every backend shares.

A backend answers "the top-k corpus rows by inner product for each query row".
Embeddings are L2-normalised float32, so inner product is cosine similarity.

Ordering contract (all backends, so results are reproducible across them):
results are sorted by score descending, and exactly equal scores are ordered by
lower corpus position first. A tie at the k-th place is resolved the same way:
of several rows with the k-th score, the lowest positions are kept. Scores are
compared as float32 values (``-0.0 == 0.0``). Slots beyond the available
results hold index ``-1`` and score ``-inf``.

Two backends only give identical answers where they compute identical float32
scores; BLAS libraries may differ in the last bit for the same dot product, so
near-ties (not exact ties) can legitimately order differently across backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from vembed_bench.errors import VembedError

DEFAULT_MEMORY_MB = 256
"""Default budget for the temporary score blocks of one search call."""

EXACT_INDEXES = ("flat",)
APPROXIMATE_INDEXES = ("hnsw", "ivf")
MAX_CORPUS = 2**32 - 2
"""The exact selection packs a corpus position into 32 bits."""


@dataclass(frozen=True)
class SearchResult:
    """Top-k results of one search call.

    ``scores`` is float32 ``(n_queries, k)``, ``indices`` int64 ``(n_queries, k)``
    holding corpus positions (``-1`` and ``-inf`` pad rows with fewer than k
    results). ``exact`` is False for approximate indexes. ``info`` holds what
    the result file should record about how the search ran (corpus blocks,
    GPU sharding...); it enters the result's ``search_info``.
    """

    scores: np.ndarray
    indices: np.ndarray
    backend: str
    index: str
    exact: bool
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


@runtime_checkable
class SearchBackend(Protocol):
    """What :func:`vembed_bench.search.search` needs from a backend."""

    name: str

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
        """Return the top-``k`` corpus rows for each query (see the module docstring)."""
        ...

    def describe(self, index: str = "flat") -> dict[str, Any]:
        """Provenance for the result file: library version, device, index spec, threads."""
        ...


@dataclass(frozen=True)
class SearchInputs:
    """Validated, normalised arguments of one search call."""

    queries: np.ndarray  # float32, C-contiguous (nq, d)
    corpus: np.ndarray  # float32, C-contiguous (n, d)
    k: int
    exclude: np.ndarray | None  # int64 (nq,), -1 = none; None when nothing is excluded
    candidates: list[np.ndarray] | None  # per query: sorted unique int64 positions

    @property
    def n_queries(self) -> int:
        return int(self.queries.shape[0])

    @property
    def n_corpus(self) -> int:
        return int(self.corpus.shape[0])

    @property
    def k_work(self) -> int:
        """k capped at the most results a query can have: no work is spent on padding."""
        if self.candidates is not None:
            longest = max((len(c) for c in self.candidates), default=0)
            return max(1, min(self.k, longest))
        return max(1, min(self.k, self.n_corpus))


def _as_matrix(x: np.ndarray, what: str, check_values: bool = True) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise VembedError(f"search {what} must be a 2-D (rows, dim) array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise VembedError(f"search {what} must be a real numeric array, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if check_values:
        check_finite(arr, what)
    return arr


def check_finite(arr: np.ndarray, what: str) -> None:
    """Raise :class:`VembedError` if a float32 matrix holds NaN or infinite values."""
    # Row sums are cheap and propagate NaN/inf; a sum that overflows although every
    # value is finite is re-checked element-wise before complaining.
    if arr.size and not np.isfinite(arr.sum(axis=1)).all():
        if not all(np.isfinite(block).all() for block in _row_blocks(arr, 65536)):
            raise VembedError(f"search {what} contain NaN or infinite values; re-encode them")


def _row_blocks(arr: np.ndarray, rows: int):
    for start in range(0, arr.shape[0], rows):
        yield arr[start : start + rows]


def _as_positions(x: object, what: str, n_corpus: int, allow_minus_one: bool) -> np.ndarray:
    arr = np.asarray(x)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise VembedError(f"search {what} must hold integer corpus positions, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    low = -1 if allow_minus_one else 0
    if arr.min() < low or arr.max() >= n_corpus:
        bad = arr[(arr < low) | (arr >= n_corpus)][0]
        raise VembedError(
            f"search {what} holds position {bad}, outside the corpus of {n_corpus} rows"
        )
    return arr


def check_inputs(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    candidates: Sequence[np.ndarray] | None = None,
    *,
    check_corpus_values: bool = True,
) -> SearchInputs:
    """Validate the arguments of a search call; raise :class:`VembedError` on bad input.

    ``check_corpus_values=False`` leaves the NaN/inf check of the corpus to the
    caller: a search in blocks checks each block as it reads it, so a
    memory-mapped corpus is not read an extra time.
    """
    q = _as_matrix(queries, "queries")
    c = _as_matrix(corpus, "corpus", check_corpus_values)
    if q.shape[1] != c.shape[1]:
        raise VembedError(
            f"search queries have dimension {q.shape[1]} but the corpus has {c.shape[1]}; "
            "encode both with the same model"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise VembedError(f"search k must be a positive integer, got {k!r}")
    if c.shape[0] > MAX_CORPUS:
        raise VembedError(f"search corpus has {c.shape[0]} rows; at most {MAX_CORPUS} are supported")
    nq, n = q.shape[0], c.shape[0]

    excl = None
    if exclude is not None:
        excl = _as_positions(exclude, "exclude", n, allow_minus_one=True).reshape(-1)
        if excl.shape[0] != nq:
            raise VembedError(
                f"search exclude has {excl.shape[0]} entries but there are {nq} queries"
            )
        if not (excl >= 0).any():
            excl = None

    cands = None
    if candidates is not None:
        if len(candidates) != nq:
            raise VembedError(
                f"search candidates has {len(candidates)} lists but there are {nq} queries"
            )
        cands = []
        for i, row in enumerate(candidates):
            pos = _as_positions(row, f"candidates[{i}]", n, allow_minus_one=False).reshape(-1)
            pos = np.unique(pos)  # sorted, so duplicates cannot appear twice in results
            if excl is not None and excl[i] >= 0:
                pos = pos[pos != excl[i]]
            cands.append(pos)
    return SearchInputs(q, c, int(k), excl, cands)


def normalize_index(index: str) -> str:
    """Canonical index spec: ``flat``, ``hnsw``, ``ivf``, or a raw faiss factory string.

    The factory string ``Flat`` is the exact index and maps to ``flat``.
    """
    if not isinstance(index, str) or not index.strip():
        raise VembedError(f"search index must be a non-empty string, got {index!r}")
    spec = index.strip()
    low = spec.lower()
    if low in EXACT_INDEXES or low in APPROXIMATE_INDEXES:
        return low
    return spec


def require_exact(backend: str, index: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    """Reject approximate index specs and unknown options for exact-only backends."""
    if normalize_index(index) != "flat":
        raise VembedError(
            f"search index {index!r} needs the faiss backend (install faiss-cpu); "
            f"the {backend} backend does exact search only (index='flat')"
        )
    check_options(backend, "flat", options, allowed)


def check_options(backend: str, index: str, options: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(sorted(allowed)) or "none"
        raise VembedError(
            f"search option {unknown[0]!r} is not understood by the {backend} backend "
            f"with index {index!r} (accepted: {accepted})"
        )


def memory_budget_bytes(options: dict[str, Any], default_mb: float = DEFAULT_MEMORY_MB) -> int:
    """The ``memory_mb`` option in bytes: the budget for temporary score blocks."""
    mb = options.get("memory_mb", default_mb)
    if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not mb > 0:
        raise VembedError(f"search option memory_mb must be a positive number, got {mb!r}")
    return max(int(mb * 2**20), 1 << 20)


def make_result(
    scores: np.ndarray,
    indices: np.ndarray,
    k: int,
    backend: str,
    index: str,
    exact: bool,
    info: dict[str, Any] | None = None,
) -> SearchResult:
    """Wrap backend output, padding columns up to ``k`` with (-inf, -1)."""
    missing = k - scores.shape[1]
    if missing > 0:
        scores = np.pad(scores, ((0, 0), (0, missing)), constant_values=-np.inf)
        indices = np.pad(indices, ((0, 0), (0, missing)), constant_values=-1)
    return SearchResult(
        scores=np.ascontiguousarray(scores, dtype=np.float32),
        indices=np.ascontiguousarray(indices, dtype=np.int64),
        backend=backend,
        index=index,
        exact=exact,
        info=dict(info or {}),
    )


def positive_int_option(options: dict[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VembedError(f"search option {name} must be a positive integer, got {value!r}")
    return int(value)


def empty_result(n_queries: int, k: int, backend: str, index: str, exact: bool) -> SearchResult:
    """A result with every slot padded (no corpus rows or no candidates)."""
    return SearchResult(
        scores=np.full((n_queries, k), -np.inf, dtype=np.float32),
        indices=np.full((n_queries, k), -1, dtype=np.int64),
        backend=backend,
        index=index,
        exact=exact,
    )
