"""Late-interaction (multi-vector) models: one ``(tokens, dim)`` matrix per item, MaxSim search.

A ColBERT-style folder, a ColPali/ColQwen2 folder, ``--model-type colbert|colvision``
or an encoder object with ``multi_vector = True`` is evaluated here. The
embeddings go through the same cache (as ragged entries) and the same stages as
dense ones; the search is MaxSim (:func:`vembed_bench.search.maxsim.maxsim_search`),
either exact over the whole corpus in blocks (``--maxsim exact``) or FAISS
token candidates plus an exact rerank (``--maxsim faiss``, ``--candidate-depth``
nearest document tokens per query token). The result's ``search_info`` records which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vembed_bench.data.types import TaskData
from vembed_bench.errors import VembedError
from vembed_bench.evaluation.stages import Embedded, search_constraints, search_info
from vembed_bench.options import EvalOptions


@dataclass(frozen=True)
class MultiVectorMode:
    """MaxSim retrieval over token matrices."""

    dim: int | None = None
    multi_vector: bool = True
    recall_sample: int = 200
    """Queries re-run with exact MaxSim to measure the recall of ``--maxsim faiss`` (exact MaxSim is slow)."""

    def __post_init__(self) -> None:
        if self.dim is not None:
            raise VembedError("--dims (Matryoshka) applies to single-vector models, not multi-vector ones")

    def prepare(self, embedded: Embedded, data: TaskData) -> Embedded:
        queries, corpus = embedded.queries, embedded.corpus
        if len(queries) != len(data.queries) or len(corpus) != len(data.corpus):
            raise VembedError(f"encoder returned {len(queries)} query / {len(corpus)} document matrices for "
                              f"{len(data.queries)} / {len(data.corpus)} items; it must return one per item")
        return embedded

    def search(self, embedded: Embedded, data: TaskData, k: int, options: EvalOptions) -> tuple[Any, dict[str, Any]]:
        from vembed_bench.search.maxsim import maxsim_search

        exclude, candidates = search_constraints(data)
        found = maxsim_search(embedded.queries, embedded.corpus, k, mode=options.maxsim,
                              candidate_depth=options.candidate_depth, exclude=exclude, candidates=candidates)
        return found, {**search_info(found), "requested_search": options.maxsim,
                       "requested_candidate_depth": options.candidate_depth if options.maxsim == "faiss" else None}

    def exact_reference(self, embedded: Embedded, data: TaskData, k: int, rows: np.ndarray,
                        options: EvalOptions) -> tuple[np.ndarray, str]:
        """Exact MaxSim top-k positions of the queries at ``rows`` (the recall reference of ``faiss``)."""
        from vembed_bench.search.maxsim import maxsim_search

        exclude, candidates = search_constraints(data)
        found = maxsim_search([embedded.queries[i] for i in rows], embedded.corpus, k, mode="exact",
                              exclude=exclude[rows] if exclude is not None else None,
                              candidates=[candidates[i] for i in rows] if candidates is not None else None)
        return found.indices, "maxsim/exact"

    def embedding_dim(self, embedded: Embedded) -> int:
        return int(embedded.queries[0].shape[1]) if len(embedded.queries) else 0
