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

Approximate indexes (``hnsw``, ``ivf`` or a raw ``index_factory`` string) are
built on the CPU from the corpus for each call; results come back with
``exact=False``. HNSW builds with several threads are not bit-reproducible.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.base import (
    SearchResult,
    check_inputs,
    check_options,
    empty_result,
    make_result,
    memory_budget_bytes,
    normalize_index,
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

_OPTIONS = {
    "flat": ("memory_mb",),
    "hnsw": ("memory_mb", "M", "ef_search", "ef_construction"),
    "ivf": ("memory_mb", "nlist", "nprobe"),
}
_FACTORY_ALIASES = {"ef_search": "efSearch"}


def _faiss():
    import faiss

    return faiss


def num_gpus() -> int:
    faiss = _faiss()
    getter = getattr(faiss, "get_num_gpus", None)
    return int(getter()) if getter is not None else 0


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
        if name == "memory_mb":
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
        if spec in _OPTIONS:
            check_options(self.name, spec, index_options, _OPTIONS[spec])
        budget = memory_budget_bytes(index_options)
        inp = check_inputs(queries, corpus, k, exclude, candidates)
        exact = spec == "flat"
        if inp.candidates is not None and not exact:
            raise VembedError(
                f"search with candidates is always exact; use index='flat' instead of {index!r}"
            )
        if inp.n_corpus == 0 or inp.n_queries == 0:
            return empty_result(inp.n_queries, inp.k, self.name, spec, exact)
        if inp.candidates is not None:
            # Per-query candidate lists have no faiss index form; the shared numpy
            # scorer (gather + dot, or one matmul over overlapping lists) is exact.
            scores, indices = tk.search_candidates_numpy(
                inp.queries, inp.corpus, inp.candidates, inp.k_work, budget
            )
        elif exact:
            scores, indices = self._exact(inp.queries, inp.corpus, inp.k_work, inp.exclude, budget)
        else:
            scores, indices = self._approximate(
                spec, inp.queries, inp.corpus, inp.k_work, inp.exclude, index_options, budget
            )
        return make_result(scores, indices, inp.k, self.name, spec, exact)

    def describe(self, index: str = "flat") -> dict[str, Any]:
        faiss = self._faiss
        spec = normalize_index(index)
        on_gpu = self.gpus > 0 and spec != "hnsw"
        return {
            "backend": self.name,
            "library": f"faiss {faiss.__version__}",
            "compile_options": faiss.get_compile_options().strip(),
            "device": f"gpu x{self.gpus}" if on_gpu else "cpu",
            "index": spec,
            "exact": spec == "flat",
            "threads": int(faiss.omp_get_max_threads()),
        }

    # --- exact ---

    def _knn(self, q: np.ndarray, x: np.ndarray, kk: int, budget: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = self._faiss
        if self.gpus > 0 and kk <= GPU_MAX_K:
            if self._gpu_res is None:
                self._gpu_res = faiss.StandardGpuResources()
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

    def _exact(
        self, q: np.ndarray, x: np.ndarray, k: int, exclude: np.ndarray | None, budget: int
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
            dist, ids = self._knn(qc, x, kk, budget)
            keys, ambiguous = resolve_fetched(dist, ids, k, excl, complete)
            s, i = tk.unpack_keys(keys)
            redo = np.flatnonzero(ambiguous)
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
                index.add(x)
                index.hnsw.efSearch = max(kk, _positive_int("ef_search", options.get("ef_search", max(64, kk))))
                return index
            if spec == "ivf":
                nlist = min(n, _positive_int("nlist", options.get("nlist", ivf_nlist(n))))
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
                index.train(x)
                index.add(x)
                index.nprobe = min(nlist, _positive_int("nprobe", options.get("nprobe", IVF_NPROBE)))
                return self._maybe_gpu(index, {"nprobe": index.nprobe})
            params = _factory_parameters(options)
            index = faiss.index_factory(d, spec, ip)
            if not index.is_trained:
                index.train(x)
            index.add(x)
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
        chunk = max(1024, budget // (kk * 40))
        out = np.empty((q.shape[0], k), dtype=np.uint64)
        for q0 in range(0, q.shape[0], chunk):
            dist, ids = index.search(q[q0 : q0 + chunk], kk)
            excl = exclude[q0 : q0 + chunk] if exclude is not None else None
            out[q0 : q0 + chunk], _ = resolve_fetched(dist, ids, k, excl, complete=True)
        return tk.unpack_keys(out)


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
