"""Compressed corpus vectors and the faiss index over them: one deployment variant each.

A variant is a *precision* (how each vector is stored) and an *index* (how the
stored vectors are searched). All of them answer "top-k corpus rows by inner
product" for float32 query vectors, so their rankings can be scored like any
search's.

Precisions:

- ``float32``: the vectors as encoded (4 bytes a dimension).
- ``float16``: faiss's ``QT_fp16`` scalar quantiser (2 bytes); queries stay float32.
- ``int8``: symmetric per-dimension scalar quantisation (1 byte). Over the
  corpus, ``scale_j = max_i |x_ij| / 127`` (1 where a dimension is all zero), and
  ``code_ij = clip(round(x_ij / scale_j), -127, 127)``; no offset, so zero stays
  zero and the sign of every value is kept. A float32 query ``q`` scores a
  document by ``q · (code * scale)``. faiss stores it as its ``QT_8bit`` scalar
  quantiser with the per-dimension range set (not trained) to this grid:
  ``vmin_j = -127.5 scale_j``, ``vdiff_j = 255 scale_j``, so its byte is
  ``code + 127`` and it decodes to ``code * scale`` exactly, and the query stays
  float32. (faiss's ``QT_8bit_direct*`` byte kernels round the *query* to
  integers as well, which is a different method.) The scales come from the
  corpus alone.
- ``binary``: one sign bit per dimension (``x > 0``), for queries too, packed
  8 to a byte (a dimension that is not a multiple of 8 is padded with zero
  bits, equal in every code). The ``rescore_depth`` codes nearest to the query's
  by Hamming distance are the candidates, and they are ranked by the exact
  float32 inner product with the stored float32 vectors, which the deployment
  must therefore keep as well (counted as ``rescore_bytes``). Of candidates tied
  in Hamming distance at the cut, faiss's flat scan keeps the lower corpus
  positions (the tests check it); in the HNSW graph the choice is faiss's.

Indexes: ``flat`` compares every stored code; ``hnsw`` is faiss's graph index
(``M`` links a node, ``ef_construction``, ``ef_search`` at least the depth
fetched); ``ivfpq`` is inverted lists over a product quantiser, its own
compression (``pq_subquantizers(d)`` bytes a vector), so it takes no precision
and needs a corpus large enough to train 256 centroids per sub-quantiser
(:data:`IVFPQ_MIN_CORPUS`). Any other faiss index is given by its
``faiss.index_factory`` string (``HNSW32,SQ8``, ``OPQ16,IVF256,PQ16``): it stores
vectors its own way (precision :data:`FACTORY_PRECISION`), is trained on the
corpus when it needs training, and gets ``efSearch`` / ``nprobe`` where it has them.

Memory is measured, not estimated: the bytes of faiss's serialised index (codes,
graph links, centroids, scalar-quantiser ranges, header), plus the float32
vectors a binary variant rescores with; ``code_bytes`` is the part that is the
vectors' codes (faiss's code size times the rows), which the formula of the
precision predicts (``n * d * 4`` for float32, ``n * ceil(d / 8)`` for binary).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.faiss_backend import HNSW_EF_CONSTRUCTION, HNSW_M, IVF_NPROBE, _rescore, ivf_nlist

PRECISIONS = ("float32", "float16", "int8", "binary")
INDEXES = ("flat", "hnsw", "ivfpq")
PQ_PRECISION = "pq"
"""The precision an IVF-PQ variant records: its codes are its own compression."""
FACTORY_PRECISION = "own"
"""The precision a factory-string variant records: the factory string says how it stores vectors."""
IVFPQ_MIN_CORPUS = 39 * 256
"""Corpus rows below which IVF-PQ is not trained: its 256-centroid sub-quantisers want faiss's
recommended 39 training points per centroid."""
RESCORE_BUDGET = 64 << 20
"""Bytes of gathered float32 candidate rows held at once while rescoring binary candidates."""


@dataclass(frozen=True)
class IndexParams:
    """How the indexes are built and searched (recorded with every variant)."""

    hnsw_m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    ef_search: int = 64
    """Raised to the number of rows fetched when that is larger."""
    nprobe: int = IVF_NPROBE
    rescore_depth: int = 100
    """Binary: Hamming candidates rescored in float32 (raised to the rows fetched when smaller)."""

    def __post_init__(self) -> None:
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "rescore_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise VembedError(f"index parameter {name} {value!r} must be a positive integer")


def require_faiss():
    """faiss, or a one-line error naming the extra that installs it."""
    try:
        import faiss
    except ImportError:
        raise VembedError("deployment trade-offs need faiss: install faiss-cpu (the [faiss] extra)") from None
    return faiss


def int8_scales(corpus: np.ndarray) -> np.ndarray:
    """Per-dimension symmetric int8 scales of a corpus: ``max |x| / 127`` (1 for an all-zero column)."""
    peak = np.abs(np.asarray(corpus, dtype=np.float32)).max(axis=0) if len(corpus) else np.zeros(corpus.shape[1])
    return np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)


def int8_codes(corpus: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``clip(round(x / scale), -127, 127)`` as int8."""
    return np.clip(np.rint(np.asarray(corpus, dtype=np.float32) / scales), -127, 127).astype(np.int8)


def sign_codes(vectors: np.ndarray) -> np.ndarray:
    """One bit per dimension (1 where the value is positive), packed 8 to a byte."""
    return np.packbits(np.asarray(vectors) > 0, axis=1)


def pq_subquantizers(dim: int) -> int:
    """IVF-PQ sub-quantisers (one byte each): the largest divisor of ``dim`` up to ``dim / 8``,
    so a vector takes about as many bytes as its sign bits."""
    cap = max(1, dim // 8)
    return max(m for m in range(1, cap + 1) if dim % m == 0)


def skip_reason(precision: str, index: str, n_corpus: int) -> str | None:
    """Why a (precision, index) pair is not built on this corpus, or None."""
    if index == "ivfpq" and n_corpus < IVFPQ_MIN_CORPUS:
        return (f"IVF-PQ needs at least {IVFPQ_MIN_CORPUS:,} corpus rows to train its 256-centroid product "
                f"quantiser (39 per centroid); this corpus has {n_corpus:,}")
    return None


class VariantIndex:
    """One built variant: ``search(queries, k)`` gives the top-k rows, ``memory()`` what it stores.

    Results are ordered by score descending, then lower corpus position (the
    order of :mod:`vembed_bench.search.base`) among the rows the index fetched.
    """

    def __init__(self, precision: str, index: str, dim: int, faiss_index: Any, *, n_corpus: int,
                 rescore_vectors: np.ndarray | None = None,
                 rescore_depth: int = 0, params: dict[str, Any] | None = None) -> None:
        self.precision = precision
        self.index = index
        self.dim = dim
        self.n_corpus = n_corpus
        self._index = faiss_index
        self._vectors = rescore_vectors
        self._depth = rescore_depth
        self.params = dict(params or {})

    @property
    def exact(self) -> bool:
        """Whether the ranking is the exact one of the stored (possibly quantised) vectors."""
        return self.index == "flat" and self.precision != "binary"

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, ids)`` of shape ``(n, k)``, padded with ``(-inf, -1)``; ``exclude[i]`` (-1: none)
        is a corpus row left out of query i's results."""
        fetch = min(self.n_corpus, k + (exclude is not None))
        if self._vectors is not None:  # binary: Hamming candidates, float32 rescoring
            depth = min(self.n_corpus, max(self._depth, fetch))
            _, ids = self._index.search(sign_codes(queries), depth)
            scores = _rescore(queries, self._vectors, ids, RESCORE_BUDGET)
        else:
            scores, ids = self._index.search(queries, fetch)
        keep = ids >= 0
        if exclude is not None:
            keep &= ids != exclude[:, None]
        keys = tk.pack_keys(scores, np.where(keep, ids, 0))
        keys[~keep] = tk.PAD
        return tk.unpack_keys(tk.smallest_keys(keys, k, sort=True))

    def memory(self) -> dict[str, int]:
        """Bytes of the serialised faiss index and of the float32 vectors binary rescoring reads."""
        faiss = require_faiss()
        serialise = faiss.serialize_index_binary if self.precision == "binary" else faiss.serialize_index
        index_bytes = int(serialise(self._index).nbytes)
        rescore_bytes = int(self._vectors.nbytes) if self._vectors is not None else 0
        total = index_bytes + rescore_bytes
        return {"index_bytes": index_bytes, "code_bytes": code_bytes(faiss, self._index),
                "rescore_bytes": rescore_bytes, "total_bytes": total,
                "bytes_per_vector": round(total / max(1, self.n_corpus), 2)}


def code_bytes(faiss, index: Any) -> int | None:
    """Bytes of the stored vector codes alone (faiss's per-vector code size times its rows): of the
    storage of a graph index, the lists of an IVF one, the inner index of a transform; None when the
    index type keeps no fixed-size codes."""
    if isinstance(index, faiss.IndexBinary):
        return int(index.code_size) * int(index.ntotal)
    index = faiss.downcast_index(index)
    if getattr(index, "storage", None) is not None:
        return code_bytes(faiss, index.storage)
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return int(ivf.code_size) * int(ivf.ntotal)
    if isinstance(index, faiss.IndexPreTransform):
        return code_bytes(faiss, index.index)
    size = getattr(index, "code_size", None)
    return int(size) * int(index.ntotal) if size is not None else None


def factory_error(spec: str, dim: int) -> str | None:
    """Why ``faiss.index_factory`` refuses ``spec`` at ``dim`` with inner product (its last line), or None."""
    faiss = require_faiss()
    try:
        faiss.index_factory(int(dim), spec, faiss.METRIC_INNER_PRODUCT)
    except (RuntimeError, ValueError, TypeError) as err:
        return _last_line(err)
    return None


def build(corpus: np.ndarray, precision: str, index: str, params: IndexParams, fetch: int) -> VariantIndex:
    """Build the variant over ``corpus`` (float32 unit rows); ``fetch`` is the most rows a search asks
    for (HNSW's ``ef_search`` and the binary rescoring depth are raised to it)."""
    if precision == FACTORY_PRECISION:
        return build_factory(corpus, index, params, fetch)
    if precision not in PRECISIONS and precision != PQ_PRECISION:
        raise VembedError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if index not in INDEXES:
        raise VembedError(f"unknown index {index!r}; choose from {', '.join(INDEXES)}")
    faiss = require_faiss()
    x = np.ascontiguousarray(corpus, dtype=np.float32)
    n, d = x.shape
    ip = faiss.METRIC_INNER_PRODUCT
    ef = max(params.ef_search, fetch)
    try:
        if index == "ivfpq":
            return _build_ivfpq(faiss, x, params)
        if precision == "binary":
            return _build_binary(faiss, x, index, params, fetch)
        kind = {"float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}.get(precision)
        info: dict[str, Any] = {}
        if index == "flat":
            built = faiss.IndexFlatIP(d) if kind is None else faiss.IndexScalarQuantizer(d, kind, ip)
        else:
            built = (faiss.IndexHNSWFlat(d, params.hnsw_m, ip) if kind is None
                     else faiss.IndexHNSWSQ(d, kind, params.hnsw_m, ip))
            built.hnsw.efConstruction = params.ef_construction
            info = {"M": params.hnsw_m, "ef_construction": params.ef_construction, "ef_search": ef}
        stored = x
        if precision == "int8":
            scales = int8_scales(x)
            _set_symmetric_int8(faiss, built, scales)
            stored = int8_codes(x, scales).astype(np.float32) * scales  # on the grid: encoded exactly
        elif not built.is_trained:
            built.train(x)
        built.add(stored)
        if index == "hnsw":
            built.hnsw.efSearch = ef
        info["faiss_index"] = type(built).__name__
        return VariantIndex(precision, index, d, built, n_corpus=n, params=info)
    except RuntimeError as err:
        raise VembedError(f"faiss could not build the {precision}/{index} index at dim {d}: {_last_line(err)}"
                          ) from None


def _last_line(err: BaseException) -> str:
    """faiss's own words: the last line of its message without the ``Error in <function> at <file>:<line>:``
    prefix (and an ``Error: '<check>' failed:`` one where a reason follows)."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    line = re.sub(r"^Error in .*? at \S+:\d+: ", "", text.splitlines()[-1])
    return re.sub(r"^Error: '.*?' failed: (?=\S)", "", line).strip()


def build_factory(corpus: np.ndarray, spec: str, params: IndexParams, fetch: int) -> VariantIndex:
    """The index of a ``faiss.index_factory`` string over ``corpus`` (inner product), trained on the
    corpus when it needs it, with ``efSearch`` (at least ``fetch``) and ``nprobe`` set where it has
    them (the parameters set are recorded)."""
    faiss = require_faiss()
    x = np.ascontiguousarray(corpus, dtype=np.float32)
    n, d = x.shape
    try:
        built = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
        if not built.is_trained:
            built.train(x)
        built.add(x)
    except RuntimeError as err:
        raise VembedError(f"faiss could not build the index {spec!r} at dim {d} over {n:,} rows: "
                          f"{_last_line(err)}") from None
    info: dict[str, Any] = {"faiss_index": spec, "faiss_class": type(faiss.downcast_index(built)).__name__}
    space = faiss.ParameterSpace()
    for name, value in (("efSearch", max(params.ef_search, fetch)), ("nprobe", params.nprobe)):
        try:
            space.set_index_parameter(built, name, value)
        except RuntimeError:  # this index has no such parameter
            continue
        info[name] = value
    return VariantIndex(FACTORY_PRECISION, spec, d, built, n_corpus=n, params=info)


def _set_symmetric_int8(faiss, index: Any, scales: np.ndarray) -> None:
    """Give a ``QT_8bit`` quantiser (of a flat or an HNSW index) the symmetric grid of ``scales``:
    faiss decodes byte ``b`` of dimension j as ``vmin_j + (b + 0.5) / 255 * vdiff_j``, which with
    ``vmin = -127.5 scale`` and ``vdiff = 255 scale`` is ``(b - 127) * scale``."""
    storage = faiss.downcast_index(index.storage) if hasattr(index, "storage") else index
    ranges = np.concatenate([-127.5 * scales, 255.0 * scales]).astype(np.float32)
    faiss.copy_array_to_vector(ranges, storage.sq.trained)
    storage.is_trained = True
    index.is_trained = True


def _build_binary(faiss, x: np.ndarray, index: str, params: IndexParams, fetch: int) -> VariantIndex:
    n, d = x.shape
    bits = 8 * -(-d // 8)
    depth = min(n, max(params.rescore_depth, fetch))
    built = faiss.IndexBinaryFlat(bits) if index == "flat" else faiss.IndexBinaryHNSW(bits, params.hnsw_m)
    info: dict[str, Any] = {"rescore_depth": depth, "bits": bits}
    if index == "hnsw":
        built.hnsw.efConstruction = params.ef_construction
    built.add(sign_codes(x))
    if index == "hnsw":
        built.hnsw.efSearch = max(params.ef_search, depth)
        info.update(M=params.hnsw_m, ef_construction=params.ef_construction, ef_search=built.hnsw.efSearch)
    info["faiss_index"] = type(built).__name__
    return VariantIndex("binary", index, d, built, n_corpus=n, rescore_vectors=x, rescore_depth=depth, params=info)


def _build_ivfpq(faiss, x: np.ndarray, params: IndexParams) -> VariantIndex:
    n, d = x.shape
    nlist, m = ivf_nlist(n), pq_subquantizers(d)
    built = faiss.index_factory(d, f"IVF{nlist},PQ{m}", faiss.METRIC_INNER_PRODUCT)
    built.train(x)
    built.add(x)
    nprobe = min(nlist, params.nprobe)
    faiss.extract_index_ivf(built).nprobe = nprobe
    info = {"faiss_index": f"IVF{nlist},PQ{m}", "nlist": nlist, "pq_subquantizers": m, "nprobe": nprobe}
    return VariantIndex(PQ_PRECISION, "ivfpq", d, built, n_corpus=n, params=info)
