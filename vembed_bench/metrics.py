"""Retrieval metrics over ranked top-K lists and graded qrels.

Every metric is computed per query and kept per query (later code bootstraps
confidence intervals from those values), then averaged. The conventions follow
trec_eval (``recall_k``, ``ndcg_cut_k``, ``map_cut_k``, ``recip_rank``, ``P_1``)
so numbers can be compared with other toolkits; the tests check them against
``pytrec_eval`` query by query. ``hit@k`` is the metric-learning "Recall@K"
(SOP, CLIP retrieval) that papers also call recall, hence the separate name.

The work is vectorised: the grade of every retrieved document is looked up in
one sorted-key search over all (query, document) qrel pairs, after which every
metric is a cumulative sum along the rank axis. 60,000 queries x K=100 score in
well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vembed_bench.data.types import Qrels

__all__ = [
    "METRIC_DEFINITIONS",
    "MetricScores",
    "metric_names",
    "score",
    "score_indices",
]

METRIC_DEFINITIONS: dict[str, str] = {
    "recall@k": (
        "Share of the query's relevant documents (grade > 0) that appear in the top k "
        "results, |relevant ∩ top-k| / |relevant| (trec_eval recall_k)."
    ),
    "hit@k": (
        "1 if at least one relevant document (grade > 0) appears in the top k results, "
        "else 0 (the SOP/CLIP 'Recall@K' convention)."
    ),
    "mrr@k": (
        "Reciprocal rank 1/r of the first relevant document (grade > 0) if it is within "
        "the top k, else 0 (trec_eval recip_rank on the run cut at k)."
    ),
    "ndcg@k": (
        "DCG of the top k with gain = relevance grade (negative grades count as 0) and "
        "discount log2(rank + 1), divided by the DCG of the ideal ordering of all the "
        "query's judged relevant documents cut at k (trec_eval ndcg_cut_k)."
    ),
    "map@k": (
        "Sum of precision@rank over the relevant documents (grade > 0) retrieved within "
        "the top k, divided by the query's total number of relevant documents R, even "
        "when R > k (trec_eval map_cut_k)."
    ),
    "precision@1": (
        "1 if the first result is relevant (grade > 0), else 0 (trec_eval P_1)."
    ),
}
"""One sentence per metric family; written into result files with the numbers."""

_FAMILIES_AT_K = ("recall", "hit", "mrr", "ndcg", "map")


def _check_k_values(k_values: Sequence[int]) -> list[int]:
    ks = sorted({int(k) for k in k_values})
    if not ks:
        raise ValueError("k_values is empty: give at least one cutoff, e.g. [1, 10]")
    if ks[0] < 1:
        raise ValueError(f"k values must be >= 1, got {ks[0]}")
    return ks


def metric_names(k_values: Sequence[int]) -> list[str]:
    """Names of all metrics computed for ``k_values``, in result-file order.

    Families in the order recall, hit, mrr, ndcg, map (each over ascending k),
    then ``precision@1``.
    """
    ks = _check_k_values(k_values)
    return [f"{fam}@{k}" for fam in _FAMILIES_AT_K for k in ks] + ["precision@1"]


@dataclass
class MetricScores:
    """Per-query and mean metric values for one run."""

    query_ids: list[str]
    per_query: dict[str, np.ndarray]
    """Metric name -> float64 array aligned with ``query_ids``."""
    aggregate: dict[str, float]
    """Metric name -> mean over queries."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (plain lists and floats)."""
        return {
            "query_ids": list(self.query_ids),
            "aggregate": {name: float(v) for name, v in self.aggregate.items()},
            "per_query": {name: [float(x) for x in v] for name, v in self.per_query.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricScores:
        """Inverse of :meth:`to_dict`; checks that every array matches the query ids."""
        query_ids = [str(q) for q in d["query_ids"]]
        per_query = {
            str(name): np.asarray(values, dtype=np.float64)
            for name, values in d["per_query"].items()
        }
        for name, values in per_query.items():
            if values.shape != (len(query_ids),):
                raise ValueError(
                    f"metric {name!r} has {values.size} per-query values "
                    f"but there are {len(query_ids)} query ids"
                )
        aggregate = {str(name): float(v) for name, v in d["aggregate"].items()}
        return cls(query_ids=query_ids, per_query=per_query, aggregate=aggregate)


def _qrel_arrays(
    query_ids: Sequence[str], doc_pos: Mapping[str, int], qrels: Qrels
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten the qrels of the scored queries.

    Returns, for every judged pair with grade > 0 of every scored query, its
    query row, corpus position (-1 when the document is not in the corpus: it
    still counts towards R and the ideal DCG, as in trec_eval) and grade, plus
    the number of relevant documents per query.
    """
    rel_docs: list[str] = []
    grades: list[float] = []
    counts: list[int] = []
    for qid in query_ids:
        judged = qrels.get(qid) or {}
        relevant = [(did, grade) for did, grade in judged.items() if grade > 0]
        if not relevant:
            raise ValueError(
                f"query {qid!r} has no relevant document (grade > 0) in the qrels; "
                "drop such queries before scoring"
            )
        counts.append(len(relevant))
        for did, grade in relevant:
            rel_docs.append(did)
            grades.append(grade)
    n_rel = np.asarray(counts, dtype=np.int64)
    rows = np.repeat(np.arange(len(query_ids), dtype=np.int64), n_rel)
    cols = [doc_pos.get(did, -1) for did in rel_docs]
    return (
        rows,
        np.asarray(cols, dtype=np.int64),
        np.asarray(grades, dtype=np.float64),
        n_rel,
    )


def _ideal_dcg(
    rows: np.ndarray, grades: np.ndarray, n_queries: int, ks: list[int], discounts: np.ndarray
) -> dict[int, np.ndarray]:
    """DCG of the best possible ranking of each query's relevant docs, cut at each k."""
    kmax = ks[-1]
    # Sort by query, then grade descending; the position within each query's
    # group is its ideal rank. Only the first kmax ranks matter.
    order = np.lexsort((-grades, rows))
    r, g = rows[order], grades[order]
    starts = np.searchsorted(r, np.arange(n_queries))
    pos = np.arange(r.size) - starts[r]
    keep = pos < kmax
    width = int(pos[keep].max()) + 1 if keep.any() else 1
    ideal = np.zeros((n_queries, width), dtype=np.float64)
    ideal[r[keep], pos[keep]] = g[keep]
    cum = np.cumsum(ideal * discounts[:width], axis=1)
    return {k: cum[:, min(k, width) - 1] for k in ks}


def score_indices(
    indices: np.ndarray,
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    qrels: Qrels,
    k_values: Sequence[int],
) -> MetricScores:
    """Score ranked corpus positions; the fast path used by the pipeline.

    ``indices[i, j]`` is the corpus position (into ``doc_ids``) of the result at
    rank ``j + 1`` for ``query_ids[i]``; ``-1`` marks padding when a query has
    fewer than K results and counts as a miss. Rows are assumed to hold no
    duplicate documents (search output never does). Cutoffs larger than K
    behave as in trec_eval: missing ranks are misses. Every query must have at
    least one relevant document in ``qrels``, otherwise ``ValueError``.
    """
    ks = _check_k_values(k_values)
    idx = np.asarray(indices)
    if idx.ndim != 2:
        raise ValueError(f"indices must be 2-D (n_queries, K), got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer) and idx.size:
        raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    n_q, depth = idx.shape
    query_ids = [str(q) for q in query_ids]
    if len(query_ids) != n_q:
        raise ValueError(f"{len(query_ids)} query ids for {n_q} rows of indices")
    if n_q == 0:
        raise ValueError("no queries to score")
    if len(set(query_ids)) != n_q:
        raise ValueError("query_ids contain duplicates")
    n_docs = len(doc_ids)
    if idx.size and (idx.min() < -1 or idx.max() >= n_docs):
        raise ValueError(
            f"indices must lie in [-1, {n_docs - 1}] for a corpus of {n_docs} documents"
        )
    doc_pos = {d: i for i, d in enumerate(doc_ids)}
    if len(doc_pos) != n_docs:
        raise ValueError("doc_ids contain duplicates")

    rows, cols, grades, n_rel = _qrel_arrays(query_ids, doc_pos, qrels)

    # Grade of every retrieved document: look its (row, col) key up among the
    # sorted keys of the relevant pairs. Unjudged, non-relevant and padding
    # slots get grade 0.
    in_corpus = cols >= 0
    keys = rows[in_corpus] * n_docs + cols[in_corpus]
    order = np.argsort(keys, kind="stable")
    keys, key_grades = keys[order], grades[in_corpus][order]
    gain = np.zeros((n_q, depth), dtype=np.float64)
    if keys.size and depth:
        run_keys = np.arange(n_q, dtype=np.int64)[:, None] * n_docs + idx
        pos = np.searchsorted(keys, run_keys)
        np.minimum(pos, keys.size - 1, out=pos)
        # Padding (-1) would alias the previous row's last document: mask it.
        match = (keys[pos] == run_keys) & (idx >= 0)
        gain[match] = key_grades[pos[match]]
        del run_keys, pos, match
    rel = gain > 0

    ranks = np.arange(1, max(depth, ks[-1]) + 1, dtype=np.float64)
    discounts = 1.0 / np.log2(ranks + 1.0)
    r_count = n_rel.astype(np.float64)

    # Cumulative sums along the rank axis; the value at column k-1 is the metric
    # at cutoff k. Cutoffs beyond K read the last column (missing ranks = misses).
    per_query: dict[str, np.ndarray] = {}
    if depth:
        cum_rel = np.cumsum(rel, axis=1, dtype=np.float64)
        cum_dcg = np.cumsum(gain * discounts[:depth], axis=1)
        cum_ap = np.cumsum(np.where(rel, cum_rel / ranks[:depth], 0.0), axis=1)
        # 0-based rank of the first relevant result; depth when there is none.
        first = np.where(rel.any(axis=1), np.argmax(rel, axis=1), depth)
    else:
        zeros = np.zeros((n_q, 1))
        cum_rel = cum_dcg = cum_ap = zeros
        first = np.zeros(n_q, dtype=np.int64)
    found_any = first < depth
    recip_rank = np.where(found_any, 1.0 / (first + 1.0), 0.0)
    idcg = _ideal_dcg(rows, grades, n_q, ks, discounts)

    for k in ks:
        col = max(min(k, depth), 1) - 1
        found = cum_rel[:, col]
        per_query[f"recall@{k}"] = found / r_count
        per_query[f"hit@{k}"] = (found > 0).astype(np.float64)
        per_query[f"mrr@{k}"] = np.where(first < k, recip_rank, 0.0)
        per_query[f"ndcg@{k}"] = cum_dcg[:, col] / idcg[k]
        per_query[f"map@{k}"] = cum_ap[:, col] / r_count
    per_query["precision@1"] = rel[:, 0].astype(np.float64) if depth else np.zeros(n_q)

    ordered = {name: per_query[name] for name in metric_names(ks)}
    aggregate = {name: float(v.mean()) for name, v in ordered.items()}
    return MetricScores(query_ids=query_ids, per_query=ordered, aggregate=aggregate)


def score(
    rankings: Mapping[str, Sequence[str]], qrels: Qrels, k_values: Sequence[int]
) -> MetricScores:
    """Score ranked doc-id lists, one per query (best first).

    Convenience wrapper over :func:`score_indices`. Exactly the queries in
    ``rankings`` are scored, in its order; qrels of other queries are ignored.
    Lists may be shorter than k or empty; a document listed twice for one
    query raises ``ValueError``.
    """
    query_ids = [str(q) for q in rankings]
    vocab: dict[str, int] = {}
    depth = max((len(r) for r in rankings.values()), default=0)
    idx = np.full((len(query_ids), depth), -1, dtype=np.int64)
    for row, (qid, ranked) in enumerate(rankings.items()):
        positions = [vocab.setdefault(str(d), len(vocab)) for d in ranked]
        if len(set(positions)) != len(positions):
            raise ValueError(f"ranking of query {qid!r} lists a document more than once")
        idx[row, : len(positions)] = positions
    return score_indices(idx, query_ids, list(vocab), qrels, k_values)
