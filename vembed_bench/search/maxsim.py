"""Late-interaction (multi-vector) search: ColBERT / ColPali MaxSim.

A query and a document are each a matrix of unit-norm token vectors; their
score is MaxSim: for every query token, the best dot product with any document
token, summed over query tokens. Two ways to search:

* ``exact``: every document is scored. Documents are packed into blocks padded
  to the block's longest document (sorted by length so padding stays small),
  and each block is scored for all query tokens with one matmul; padded
  positions are masked to ``-inf`` before the max. Memory is bounded by the
  block size, not the corpus.
* ``faiss``: PLAID-style candidate generation. All document token vectors go
  into one FAISS inner-product index (exact below :data:`IVF_MIN_TOKENS` tokens,
  an inverted file above, see :func:`token_index`); each query token fetches its
  ``candidate_depth`` nearest document tokens, the documents they belong to are
  the candidates, and those are re-ranked with exact MaxSim. Faster on large
  corpora, possibly missing a document none of whose tokens is near any query
  token (the result file records ``exact: false`` and the depth).

Ties are broken by the lower corpus position, as in :mod:`vembed_bench.search.base`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search.base import SearchResult

MODES = ("exact", "faiss")
DEFAULT_BLOCK_TOKENS = 1 << 18  # padded document tokens scored per block
DEFAULT_CANDIDATE_DEPTH = 256


def maxsim(query: np.ndarray, document: np.ndarray) -> float:
    """MaxSim of one ``(Lq, d)`` query and one ``(Ld, d)`` document (the reference definition)."""
    return float((query @ document.T).max(axis=1).sum())


def _check(tokens: Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    out = []
    dim = None
    for i, t in enumerate(tokens):
        t = np.ascontiguousarray(t, dtype=np.float32)
        if t.ndim != 2 or t.shape[0] == 0:
            raise VembedError(f"{what} {i}: expected a non-empty (tokens, dim) matrix, got shape {t.shape}")
        if dim is not None and t.shape[1] != dim:
            raise VembedError(f"{what} {i}: token dimension {t.shape[1]} differs from {dim}")
        dim = t.shape[1]
        out.append(t)
    return out


def _blocks(lengths: np.ndarray, block_tokens: int) -> list[np.ndarray]:
    """Documents grouped by length (longest first) so each block has ~block_tokens padded tokens."""
    order = np.argsort(-lengths, kind="stable")
    blocks, i = [], 0
    while i < len(order):
        width = int(lengths[order[i]])
        size = max(1, block_tokens // max(1, width))
        blocks.append(order[i : i + size])
        i += size
    return blocks


def _pack(docs: list[np.ndarray], ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(B, Lmax, d)`` padded tokens and a ``(B, Lmax)`` bool mask of real tokens."""
    width = max(docs[i].shape[0] for i in ids)
    dim = docs[ids[0]].shape[1]
    packed = np.zeros((len(ids), width, dim), dtype=np.float32)
    mask = np.zeros((len(ids), width), dtype=bool)
    for r, i in enumerate(ids):
        n = docs[i].shape[0]
        packed[r, :n] = docs[i]
        mask[r, :n] = True
    return packed, mask


def _score_block(query: np.ndarray, packed: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """MaxSim of one query against a packed block: ``(B,)``."""
    sims = np.einsum("qd,bld->bql", query, packed, optimize=True)  # (B, Lq, Lmax)
    sims = np.where(mask[:, None, :], sims, -np.inf)
    return sims.max(axis=2).sum(axis=1)


def _topk(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top k by score descending, then position ascending; padded with -1 / -inf."""
    order = np.lexsort((positions, -scores))[:k]
    idx = np.full(k, -1, dtype=np.int64)
    val = np.full(k, -np.inf, dtype=np.float32)
    idx[: len(order)] = positions[order]
    val[: len(order)] = scores[order]
    return idx, val


def exact_scores(queries: Sequence[np.ndarray], documents: Sequence[np.ndarray], *,
                 block_tokens: int = DEFAULT_BLOCK_TOKENS) -> np.ndarray:
    """The full ``(n_queries, n_docs)`` MaxSim matrix, computed block by block."""
    qs, ds = _check(queries, "query"), _check(documents, "document")
    lengths = np.array([d.shape[0] for d in ds])
    out = np.empty((len(qs), len(ds)), dtype=np.float32)
    for ids in _blocks(lengths, block_tokens):
        packed, mask = _pack(ds, ids)
        for qi, q in enumerate(qs):
            out[qi, ids] = _score_block(q, packed, mask)
    return out


def maxsim_search(
    queries: Sequence[np.ndarray],
    documents: Sequence[np.ndarray],
    k: int,
    *,
    mode: str = "exact",
    candidate_depth: int = DEFAULT_CANDIDATE_DEPTH,
    block_tokens: int = DEFAULT_BLOCK_TOKENS,
    exclude: np.ndarray | None = None,
    candidates: Sequence[np.ndarray] | None = None,
) -> SearchResult:
    """Top-``k`` documents per query by MaxSim; ``mode`` is ``exact`` or ``faiss`` (see the module doc).

    ``exclude`` (a document position per query, -1 for none) and ``candidates``
    (the allowed positions per query, as for MMEB) work as in the dense search.
    The returned result has an ``info`` dict with the mode and candidate depth.
    """
    if mode not in MODES:
        raise VembedError(f"unknown multi-vector search {mode!r}; choose one of {', '.join(MODES)}")
    if k < 1 or candidate_depth < 1:
        raise VembedError("k and candidate_depth must be positive")
    qs, ds = _check(queries, "query"), _check(documents, "document")
    n = len(ds)
    if mode == "exact" or candidates is not None:
        allowed = _restrict(n, len(qs), exclude, candidates)
        if candidates is None:
            scores = exact_scores(qs, ds, block_tokens=block_tokens)
            rows = [_topk(np.where(allowed[i] if allowed is not None else True, scores[i], -np.inf)
                          .astype(np.float32), np.arange(n), k) for i in range(len(qs))]
            rows = [_drop_masked(r) for r in rows]
        else:
            rows = [_rerank(q, ds, np.asarray(c, dtype=np.int64), k, exclude, i) for i, (q, c)
                    in enumerate(zip(qs, candidates))]
        used, exact = "exact", True
    else:
        rows, token_index_used = _faiss_search(qs, ds, k, candidate_depth, exclude)
        used, exact = "faiss", False
    result = SearchResult(
        scores=np.stack([r[1] for r in rows]) if rows else np.zeros((0, k), np.float32),
        indices=np.stack([r[0] for r in rows]) if rows else np.zeros((0, k), np.int64),
        backend="maxsim", index=used, exact=exact,
    )
    object.__setattr__(result, "info", {"multi_vector": True, "search": used,
                                        "candidate_depth": None if exact else candidate_depth,
                                        "candidate_index": None if exact else token_index_used,
                                        "block_tokens": block_tokens})
    return result


def _restrict(n: int, nq: int, exclude: np.ndarray | None, candidates: Any) -> np.ndarray | None:
    if exclude is None:
        return None
    allowed = np.ones((nq, n), dtype=bool)
    for i, e in enumerate(exclude):
        if e >= 0:
            allowed[i, e] = False
    return allowed


def _drop_masked(row: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    idx, val = row
    idx = np.where(np.isneginf(val), -1, idx)
    return idx, val


def _rerank(query: np.ndarray, ds: list[np.ndarray], positions: np.ndarray, k: int,
            exclude: np.ndarray | None, qi: int) -> tuple[np.ndarray, np.ndarray]:
    positions = np.unique(positions)
    if exclude is not None and exclude[qi] >= 0:
        positions = positions[positions != exclude[qi]]
    if len(positions) == 0:
        return np.full(k, -1, np.int64), np.full(k, -np.inf, np.float32)
    packed, mask = _pack(ds, positions)
    return _topk(_score_block(query, packed, mask).astype(np.float32), positions, k)


def _faiss_search(qs: list[np.ndarray], ds: list[np.ndarray], k: int, depth: int,
                  exclude: np.ndarray | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Candidates from the token index (all query tokens in one search), then exact rerank."""
    tokens = np.ascontiguousarray(np.concatenate(ds), dtype=np.float32)
    owner = np.repeat(np.arange(len(ds), dtype=np.int64), [d.shape[0] for d in ds])
    index, described = token_index(tokens)
    _, hits = index.search(np.ascontiguousarray(np.concatenate(qs), dtype=np.float32),
                           min(depth, tokens.shape[0]))
    rows, start = [], 0
    for qi, q in enumerate(qs):
        mine = hits[start:start + q.shape[0]]
        start += q.shape[0]
        rows.append(_rerank(q, ds, owner[mine[mine >= 0]], k, exclude, qi))
    return rows, described


IVF_MIN_TOKENS = 200_000
"""Below this many document tokens the candidate index is exact (flat): IVF would not pay."""
IVF_NPROBE = 32


def token_index(tokens: np.ndarray) -> tuple[Any, str]:
    """An inner-product FAISS index over all document tokens, and its description.

    A flat index costs as much as exact MaxSim (every query token meets every
    document token), so large corpora get an inverted-file index (``4 sqrt(n)``
    lists, k-means on a sample, ``nprobe`` 32): candidate generation then reads
    a few percent of the tokens, which is where PLAID-style search saves time.
    """
    try:
        import faiss
    except ImportError:
        raise VembedError("multi-vector search 'faiss' needs faiss; install faiss-cpu or use 'exact'") from None
    n, dim = tokens.shape
    if n < IVF_MIN_TOKENS:
        index = faiss.IndexFlatIP(dim)
        index.add(tokens)
        return index, "flat"
    nlist = int(np.sqrt(n))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10  # k-means on token clusters converges fast; training is a one-off cost
    sample = tokens[np.random.default_rng(0).choice(n, size=min(n, 32 * nlist), replace=False)]
    index.train(sample)
    index.add(tokens)
    index.nprobe = min(IVF_NPROBE, nlist)
    return index, f"ivf{nlist},nprobe{index.nprobe}"
