"""FAISS search: exact brute force by default, approximate indexes on request.

Exact search calls ``faiss.knn`` / ``faiss.knn_gpu`` (no index, so the corpus is
not copied); faiss blocks the score matrix internally (4096 queries x 4096
corpus rows per GEMM on CPU, tiling by memory limits on GPU). faiss breaks ties
arbitrarily (verified: with tied integer data its order differs from "lower
position first" for most queries), so one extra neighbour is fetched and the
results are re-sorted with the shared key order of :mod:`.topk`; queries whose
k-th and (k+1)-th fetched scores tie -- where a row faiss left out could belong
-- are recomputed exactly by the numpy backend. ``exclude`` fetches one more
neighbour still and drops the excluded row.

A memory-mapped corpus (see :mod:`.blocked`) is searched in blocks of rows,
each block by the same exact search, and merged into one top-k.

GPUs: with one GPU faiss's ``knn_gpu`` is used; with several, each call's
corpus (or block) is sharded over all of them with ``index_cpu_to_all_gpus``
(option ``float16=True`` stores it in float16 there: faster, approximate).
Both are used only when this faiss build has GPU support
(:func:`gpu_support`); faiss-cpu falls back to the CPU.

Approximate indexes (``hnsw``, ``ivf``, a raw ``index_factory`` string, or a
binary factory string such as ``BFlat``, ``BIVF1024`` or ``BHNSW32``) are
built on the CPU from the corpus for each call (a memory-mapped corpus is
added block by block, and trained on a seeded sample of rows); results come
back with ``exact=False``. Binary indexes search sign bits by Hamming
distance (the dimension must be a multiple of 8) and the rows they fetch are
re-scored by exact inner product. HNSW builds with several threads are not
bit-reproducible.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.base import (
    SearchResult,
    check_finite,
    check_inputs,
    check_options,
    empty_result,
    make_result,
    memory_budget_bytes,
    normalize_index,
)
from vembed_bench.search.blocked import (
    BLOCK_OPTIONS,
    DEFAULT_BLOCK_MB,
    block_info,
    is_memory_mapped,
    release_rows,
    rows_per_block,
    search_in_blocks,
)
from vembed_bench.search.numpy_backend import exact_search_numpy

GPU_MAX_K = 2048
"""faiss GPU k-selection limit; larger k runs on the CPU."""
GPU_TILE_BYTES = 1 << 30
CPU_DATABASE_BLOCK = 4096
"""Corpus rows per faiss CPU GEMM block (faiss default 1024). Measured on a
2-core AVX-512 EPYC at d=384, k=10: 0.78 -> 0.92 of the GEMM bound; see
benchmarks/bench_search.py. The score block is 4096 x 4096 floats (64 MiB)."""

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
IVF_NPROBE = 16

TRAIN_SAMPLE_BYTES = 1 << 30
"""Most bytes of corpus rows an index is trained on when the corpus is memory-mapped."""
TRAIN_SEED = 1234

_OPTIONS = {
    "flat": ("memory_mb", "float16", *BLOCK_OPTIONS),
    "hnsw": ("memory_mb", "M", "ef_search", "ef_construction", *BLOCK_OPTIONS),
    "ivf": ("memory_mb", "nlist", "nprobe", *BLOCK_OPTIONS),
}
_BINARY_OPTIONS = ("memory_mb", "nprobe", "ef_search", *BLOCK_OPTIONS)
_NOT_INDEX_PARAMETERS = ("memory_mb", "float16", *BLOCK_OPTIONS)
_FACTORY_ALIASES = {"ef_search": "efSearch"}
_BINARY = re.compile(r"B(Flat|IVF|HNSW|Hash)")


def is_binary(spec: str) -> bool:
    """Whether an index spec is a faiss *binary* factory string (``BFlat``, ``BIVF1024``...)."""
    return bool(_BINARY.match(spec))


def _faiss():
    import faiss

    return faiss


def gpu_support(faiss) -> bool:
    """Whether this faiss build can use GPUs at all (faiss-cpu cannot, whatever it reports)."""
    return hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "get_num_gpus")


def can_shard(faiss, gpus: int) -> bool:
    """Whether a flat index can be sharded over several GPUs with ``index_cpu_to_all_gpus``."""
    return gpus > 1 and hasattr(faiss, "GpuMultipleClonerOptions") and hasattr(faiss, "index_cpu_to_all_gpus")


def num_gpus() -> int:
    """GPUs this faiss can use (0 without GPU support)."""
    faiss = _faiss()
    return int(faiss.get_num_gpus()) if gpu_support(faiss) else 0


def ivf_nlist(n: int) -> int:
    """About 4*sqrt(n) lists, but at least 39 training rows per list (faiss's minimum)."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VembedError(f"search option {name} must be a positive integer, got {value!r}")
    return int(value)


def _factory_parameters(options: dict[str, Any]) -> dict[str, float]:
    params = {}
    for name, value in options.items():
        if name in _NOT_INDEX_PARAMETERS:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise VembedError(f"search option {name} must be a number, got {value!r}")
        params[_FACTORY_ALIASES.get(name, name)] = float(value)
    return params


class FaissBackend:
    """Search with faiss (CPU, or GPU when faiss sees one and the device allows it)."""

    name = "faiss"

    @classmethod
    def available(cls) -> bool:
        """faiss is installed."""
        try:
            _faiss()
        except ImportError:
            return False
        return True

    @classmethod
    def create(cls, device: str | None = None) -> "FaissBackend":
        """The backend for ``faiss`` / ``faiss:cpu`` / ``faiss:gpu``, or a one-line error."""
        if device not in (None, "cpu", "gpu"):
            raise VembedError(f"search backend 'faiss' takes device cpu or gpu, got {device!r}")
        if not cls.available():
            raise VembedError(
                "search backend 'faiss' needs faiss: install faiss-cpu (or faiss-gpu), "
                "or use backend 'numpy'"
            )
        return cls(device)

    def __init__(self, device: str | None = None) -> None:
        faiss = _faiss()
        self._faiss = faiss
        gpus = num_gpus() if device != "cpu" else 0
        if device == "gpu" and gpus == 0:
            raise VembedError("search backend 'faiss:gpu' needs faiss-gpu and a visible GPU; use 'faiss'")
        self.gpus = gpus
        self._gpu_res = None

    # --- public API ---

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
        spec = normalize_index(index)
        binary = is_binary(spec)
        if spec in _OPTIONS:
            check_options(self.name, spec, index_options, _OPTIONS[spec])
        elif binary:
            check_options(self.name, spec, index_options, _BINARY_OPTIONS)
        budget = memory_budget_bytes(index_options)
        exact = spec == "flat"
        float16 = bool(index_options.get("float16", False))
        if float16 and not exact:
            raise VembedError(f"search option float16 applies to index 'flat' only, not {index!r}")
        if float16 and self.gpus == 0:
            raise VembedError(
                "search option float16 needs faiss with GPU support and a visible GPU "
                "(it stores the corpus in float16 on the GPUs); leave it out on the CPU"
            )
        rows = rows_per_block(corpus, index_options) if exact else None
        # A blocked search, or an index built block by block from a mapped corpus, checks each
        # block's values as it reads it (so the mapped file is read once, never held whole).
        checked_later = rows is not None or (not exact and is_memory_mapped(corpus))
        inp = check_inputs(queries, corpus, k, exclude, candidates, check_corpus_values=not checked_later)
        if inp.candidates is not None and (not exact or float16):
            raise VembedError(
                f"search with candidates is always exact; use index='flat' (without float16) instead of {index!r}"
            )
        approximate = not exact or float16
        if inp.n_corpus == 0 or inp.n_queries == 0:
            return empty_result(inp.n_queries, inp.k, self.name, spec, not approximate)
        info: dict[str, Any] = {"float16": True} if float16 else {}

        def flat(q: np.ndarray, x: np.ndarray, kk: int, excl: np.ndarray | None,
                 cands: list[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
            if cands is not None:
                # Per-query candidate lists have no faiss index form; the shared numpy
                # scorer (gather + dot, or one matmul over overlapping lists) is exact.
                return tk.search_candidates_numpy(q, x, cands, kk, budget)
            return self._exact(q, x, kk, excl, budget, float16)

        info.update(block_info(rows, inp.n_corpus, corpus))
        if exact and rows is not None:
            scores, indices = search_in_blocks(inp, inp.k_work, rows, flat)
        elif exact:
            scores, indices = flat(inp.queries, inp.corpus, inp.k_work, inp.exclude, inp.candidates)
        else:
            scores, indices = self._approximate(
                spec, inp.queries, inp.corpus, inp.k_work, inp.exclude, index_options, budget
            )
        if self.gpus > 0 and exact and inp.candidates is None:
            info["gpu_sharded"] = self._shards(inp.k_work)
        return make_result(scores, indices, inp.k, self.name, spec, not approximate, info)

    def describe(self, index: str = "flat") -> dict[str, Any]:
        faiss = self._faiss
        spec = normalize_index(index)
        on_gpu = self.gpus > 0 and spec != "hnsw" and not is_binary(spec)
        return {
            "backend": self.name,
            "library": f"faiss {faiss.__version__}",
            "compile_options": faiss.get_compile_options().strip(),
            "device": f"gpu x{self.gpus}" if on_gpu else "cpu",
            "gpu_support": gpu_support(faiss),
            "index": spec,
            "exact": spec == "flat",
            "threads": int(faiss.omp_get_max_threads()),
        }

    # --- exact ---

    def _shards(self, kk: int) -> bool:
        """Whether an exact search fetching ``kk`` neighbours is sharded over several GPUs."""
        return can_shard(self._faiss, self.gpus) and kk <= GPU_MAX_K

    def _knn(
        self, q: np.ndarray, x: np.ndarray, kk: int, budget: int, float16: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss
        if self._shards(kk):
            return self._sharded_knn(q, x, kk, float16)
        if self.gpus > 0 and kk <= GPU_MAX_K:
            if self._gpu_res is None:
                self._gpu_res = faiss.StandardGpuResources()
            if float16:  # knn_gpu takes float16 arrays as float16 vectors
                q, x = q.astype(np.float16), x.astype(np.float16)
            return faiss.knn_gpu(
                self._gpu_res,
                q,
                x,
                kk,
                metric=faiss.METRIC_INNER_PRODUCT,
                # Tiles of at least 1 GiB keep the GPU busy; the host budget is
                # usually far smaller than GPU memory.
                vectorsMemoryLimit=max(budget, GPU_TILE_BYTES),
                queriesMemoryLimit=max(budget, GPU_TILE_BYTES),
            )
        with _cpu_blocks(faiss):
            return faiss.knn(q, x, kk, metric=faiss.METRIC_INNER_PRODUCT)

    def _sharded_knn(self, q: np.ndarray, x: np.ndarray, kk: int, float16: bool) -> tuple[np.ndarray, np.ndarray]:
        """Flat inner-product search with the rows of ``x`` split over all GPUs.

        The host index holds a copy of ``x`` while it is cloned (a block, when the
        corpus is memory-mapped). Not run in this project's CI: it needs faiss-gpu.
        """
        faiss = self._faiss
        host = faiss.IndexFlatIP(x.shape[1])
        host.add(x)
        options = faiss.GpuMultipleClonerOptions()
        options.shard = True
        options.useFloat16 = bool(float16)
        index = faiss.index_cpu_to_all_gpus(host, co=options)
        del host
        return index.search(q, kk)

    def _exact(
        self,
        q: np.ndarray,
        x: np.ndarray,
        k: int,
        exclude: np.ndarray | None,
        budget: int,
        float16: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        nq, n = q.shape[0], x.shape[0]
        extra = 1 + (exclude is not None)  # one to detect boundary ties, one to drop
        kk = min(n, k + extra)
        complete = kk == n
        # Query chunks bound the (chunk, kk) result and key arrays.
        chunk = max(4096, budget // (kk * 40))
        scores = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        for q0 in range(0, nq, chunk):
            qc = q[q0 : q0 + chunk]
            excl = exclude[q0 : q0 + chunk] if exclude is not None else None
            dist, ids = self._knn(qc, x, kk, budget, float16)
            keys, ambiguous = resolve_fetched(dist, ids, k, excl, complete)
            s, i = tk.unpack_keys(keys)
            # float16 scores are approximate anyway: no exact recomputation of ties.
            redo = np.flatnonzero(ambiguous) if not float16 else np.zeros(0, dtype=np.int64)
            if redo.size:
                s[redo], i[redo] = exact_search_numpy(
                    qc[redo], x, k, excl[redo] if excl is not None else None, budget
                )
            scores[q0 : q0 + chunk], indices[q0 : q0 + chunk] = s, i
        return scores, indices

    # --- approximate ---

    def _build(self, spec: str, x: np.ndarray, options: dict[str, Any], kk: int):
        faiss = self._faiss
        n, d = x.shape
        ip = faiss.METRIC_INNER_PRODUCT
        try:
            if spec == "hnsw":
                m = _positive_int("M", options.get("M", HNSW_M))
                index = faiss.IndexHNSWFlat(d, m, ip)
                index.hnsw.efConstruction = _positive_int(
                    "ef_construction", options.get("ef_construction", HNSW_EF_CONSTRUCTION)
                )
                _add_rows(index, x, options)
                index.hnsw.efSearch = max(kk, _positive_int("ef_search", options.get("ef_search", max(64, kk))))
                return index
            if spec == "ivf":
                nlist = min(n, _positive_int("nlist", options.get("nlist", ivf_nlist(n))))
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
                index.train(_training_rows(x, 256 * nlist))
                _add_rows(index, x, options)
                index.nprobe = min(nlist, _positive_int("nprobe", options.get("nprobe", IVF_NPROBE)))
                return self._maybe_gpu(index, {"nprobe": index.nprobe})
            if is_binary(spec):
                return _build_binary(faiss, spec, x, options, kk)
            params = _factory_parameters(options)
            index = faiss.index_factory(d, spec, ip)
            if not index.is_trained:
                index.train(_training_rows(x, 256 * _nlist_of(faiss, index)))
            _add_rows(index, x, options)
            for name, value in params.items():
                faiss.ParameterSpace().set_index_parameter(index, name, value)
            return self._maybe_gpu(index, params)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise VembedError(f"faiss could not build index {spec!r}: {first}") from None

    def _maybe_gpu(self, index, params: dict[str, float]):
        """Clone to the GPUs when there are any; indexes faiss cannot clone stay on CPU."""
        if self.gpus == 0:
            return index
        faiss = self._faiss
        try:
            gpu_index = faiss.index_cpu_to_all_gpus(index)
            space = faiss.GpuParameterSpace()
            for name, value in params.items():
                space.set_index_parameter(gpu_index, name, value)
            return gpu_index
        except (RuntimeError, AttributeError):
            return index

    def _approximate(
        self,
        spec: str,
        q: np.ndarray,
        x: np.ndarray,
        k: int,
        exclude: np.ndarray | None,
        options: dict[str, Any],
        budget: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        n = x.shape[0]
        kk = min(n, k + (exclude is not None))
        index = self._build(spec, x, options, kk)
        binary = is_binary(spec)
        chunk = max(1024, budget // (kk * 40))
        out = np.empty((q.shape[0], k), dtype=np.uint64)
        for q0 in range(0, q.shape[0], chunk):
            qc = q[q0 : q0 + chunk]
            if binary:
                _, ids = index.search(_sign_bits(qc), kk)
                dist = _rescore(qc, x, ids, budget)
            else:
                dist, ids = index.search(qc, kk)
            excl = exclude[q0 : q0 + chunk] if exclude is not None else None
            out[q0 : q0 + chunk], _ = resolve_fetched(dist, ids, k, excl, complete=True)
        return tk.unpack_keys(out)


def _block_rows(x: np.ndarray, options: dict[str, Any]) -> int:
    """Rows added to an index at once: all of an in-memory corpus, blocks of a mapped one."""
    if not is_memory_mapped(x) and "block_rows" not in options:
        return max(1, x.shape[0])
    return rows_per_block(x, {"block_mb": DEFAULT_BLOCK_MB, **options}) or max(1, x.shape[0])


def _add_rows(index, x: np.ndarray, options: dict[str, Any], encode=None) -> None:
    """``index.add`` the corpus, in blocks when it is memory-mapped (pages released after each)."""
    rows = _block_rows(x, options)
    mapped = is_memory_mapped(x)
    for c0 in range(0, x.shape[0], rows):
        block = x[c0 : c0 + rows]
        if mapped:  # not checked up front (see FaissBackend.search)
            check_finite(block, "corpus")
        index.add(encode(block) if encode is not None else block)
        release_rows(x, c0, c0 + rows)


def _training_rows(x: np.ndarray, wanted: int) -> np.ndarray:
    """Rows to train an index on: the whole corpus in memory (as faiss would subsample it);
    of a memory-mapped corpus a seeded sample of at most ``wanted`` rows and
    :data:`TRAIN_SAMPLE_BYTES`, sorted by position, so training reads only the sample."""
    if not is_memory_mapped(x):
        return x
    n, d = x.shape
    size = min(n, max(wanted, 65536), max(1, TRAIN_SAMPLE_BYTES // (4 * d)))
    if size >= n:
        return np.ascontiguousarray(x)
    rows = np.sort(np.random.default_rng(TRAIN_SEED).choice(n, size=size, replace=False))
    sample = np.ascontiguousarray(x[rows])
    release_rows(x, 0, n)
    return sample


def _nlist_of(faiss, index) -> int:
    """The number of inverted lists of a factory index (1 when it has none)."""
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except (RuntimeError, AttributeError, TypeError):
        return 1


def _sign_bits(x: np.ndarray) -> np.ndarray:
    """Binary codes of float rows: one bit per dimension (positive or not), packed into bytes."""
    return np.packbits(x > 0, axis=1)


def _build_binary(faiss, spec: str, x: np.ndarray, options: dict[str, Any], kk: int):
    """A faiss binary index over the sign bits of ``x`` (``index_binary_factory``)."""
    n, d = x.shape
    if d % 8:
        raise VembedError(f"binary index {spec!r} needs an embedding dimension divisible by 8, got {d}")
    index = faiss.index_binary_factory(d, spec)
    if not index.is_trained:
        index.train(_sign_bits(_training_rows(x, 256 * getattr(index, "nlist", 1))))
    _add_rows(index, x, options, encode=_sign_bits)
    if hasattr(index, "nprobe"):
        index.nprobe = min(int(index.nlist), _positive_int("nprobe", options.get("nprobe", IVF_NPROBE)))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = max(kk, _positive_int("ef_search", options.get("ef_search", max(64, kk))))
    return index


def _rescore(q: np.ndarray, x: np.ndarray, ids: np.ndarray, budget: int) -> np.ndarray:
    """Exact float32 inner products of each query with its fetched rows (-inf where none).

    Rows are gathered for a few queries at a time, at most ``budget`` bytes of them.
    """
    nq, kk = ids.shape
    found = ids >= 0
    rows = np.where(found, ids, 0)
    scores = np.empty((nq, kk), dtype=np.float32)
    step = max(1, budget // max(1, 4 * x.shape[1] * kk))
    for q0 in range(0, nq, step):
        r = rows[q0 : q0 + step]
        gathered = np.take(x, r.ravel(), axis=0).reshape(*r.shape, -1)
        scores[q0 : q0 + step] = np.einsum("qd,qkd->qk", q[q0 : q0 + step], gathered)
    release_rows(x, 0, x.shape[0])
    scores[~found] = -np.inf
    return scores


@contextmanager
def _cpu_blocks(faiss) -> Iterator[None]:
    """Use :data:`CPU_DATABASE_BLOCK` for one call, then restore faiss's global setting."""
    cvar = faiss.cvar
    previous = cvar.distance_compute_blas_database_bs
    cvar.distance_compute_blas_database_bs = CPU_DATABASE_BLOCK
    try:
        yield
    finally:
        cvar.distance_compute_blas_database_bs = previous


def resolve_fetched(
    dist: np.ndarray,
    ids: np.ndarray,
    k: int,
    exclude: np.ndarray | None,
    complete: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-order faiss results by the shared key order and flag unresolved ties.

    ``dist``/``ids`` are the top-kk of some search (kk > k when exactness
    matters). The fetched set holds every row scoring above its smallest fetched
    score, but only *some* of the rows scoring exactly that; when the k-th kept
    score equals it, a left-out row with a lower position could belong in the
    top-k, so the query is flagged (unless ``complete``: every row was fetched).
    Returns sorted top-k keys ``(nq, k)`` and the boolean flags ``(nq,)``.
    """
    found = ids >= 0
    keep = found if exclude is None else found & (ids != exclude[:, None])
    keys = tk.pack_keys(dist, np.where(keep, ids, 0))
    keys[~keep] = tk.PAD
    top = tk.smallest_keys(keys, k, sort=True)
    if complete:
        return top, np.zeros(len(ids), dtype=bool)
    lowest_fetched = np.where(found, dist, np.inf).min(axis=1)
    kth = tk.key_scores(top[:, k - 1])
    return top, (kth == lowest_fetched) & (kth > -np.inf)
