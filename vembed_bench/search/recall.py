"""How approximate an approximate search was: its recall@k against exact search.

An approximate index (HNSW, IVF, PQ, binary codes...) trades some of the true
top-k for speed, and the scores computed from its ranking are only worth as
much as that recall. The evaluation therefore re-runs a seeded sample of the
queries (:data:`RECALL_SAMPLE`) with exact search on the same vectors and
records, for each cutoff k of the task, the mean over sampled queries of

    |approximate top-k ids  ∩  exact top-k ids| / |exact top-k ids|

(queries with no exact result at all are left out). Ids, not scores, are
compared: a row the index returned instead of an exactly tied row counts as a
miss, which errs on the side of reporting a lower recall.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RECALL_SAMPLE = 1000
"""Queries re-run with exact search to measure an approximate search's recall."""


def sample_queries(n_queries: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of ``min(size, n_queries)`` queries drawn without replacement with ``seed``."""
    if size >= n_queries:
        return np.arange(n_queries)
    return np.sort(np.random.default_rng(seed).choice(n_queries, size=size, replace=False))


def recall_at_k(approximate: np.ndarray, exact: np.ndarray, ks: Sequence[int]) -> dict[int, float | None]:
    """Mean share of each query's exact top-k ids that the approximate top-k holds, per k.

    Both arrays are ``(queries, >= max(ks))`` corpus positions, ``-1`` padded.
    None for a k where no query has an exact result.
    """
    out: dict[int, float | None] = {}
    for k in sorted(set(int(k) for k in ks)):
        shares = []
        for found, truth in zip(approximate[:, :k], exact[:, :k]):
            truth = truth[truth >= 0]
            if truth.size:
                shares.append(np.isin(truth, found[found >= 0]).sum() / truth.size)
        out[k] = float(np.mean(shares)) if shares else None
    return out


def recall_record(recalls: dict[int, float | None], n_sampled: int, seed: int, reference: str) -> dict[str, object]:
    """The ``search_info`` entries of a measured recall."""
    return {
        **{f"ann_recall@{k}": value for k, value in recalls.items()},
        "ann_recall_queries": int(n_sampled),
        "ann_recall_seed": int(seed),
        "ann_recall_reference": reference,
    }


def recall_summary(search_info: dict, main_metric: str | None = None) -> str | None:
    """"ANN recall@10 0.97 on 1,000 queries" from a result's ``search_info`` (None if not measured).

    The cutoff shown is the main metric's when it was measured, else the largest.
    """
    measured = {int(key.split("@", 1)[1]): value for key, value in search_info.items()
                if key.startswith("ann_recall@") and key.split("@", 1)[1].isdigit()}
    if not measured:
        return None
    wanted = main_metric.rsplit("@", 1)[-1] if main_metric and "@" in main_metric else ""
    k = int(wanted) if wanted.isdigit() and int(wanted) in measured else max(measured)
    value = measured[k]
    shown = "n/a" if value is None else f"{value:.2f}"
    n = search_info.get("ann_recall_queries")
    return f"ANN recall@{k} {shown}" + (f" on {n:,} queries" if isinstance(n, int) else "")
