"""Single-vector models: one unit vector per item, searched by inner product.

:class:`DenseMode` checks the encoder's output against the data, keeps the
first ``dim`` dimensions for a Matryoshka view (renormalised: what
Matryoshka-trained models are meant for), and searches with the chosen backend
and index (:mod:`vembed_bench.search`).
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
class DenseMode:
    """Dense retrieval, optionally on the first ``dim`` dimensions (Matryoshka)."""

    dim: int | None = None
    multi_vector: bool = False

    def prepare(self, embedded: Embedded, data: TaskData) -> Embedded:
        queries, corpus = embedded.queries, embedded.corpus
        if queries.shape[0] != len(data.queries) or corpus.shape[0] != len(data.corpus):
            raise VembedError(f"encoder returned {queries.shape[0]} query / {corpus.shape[0]} document vectors "
                              f"for {len(data.queries)} / {len(data.corpus)} items; the encoder must return "
                              "one row per item")
        if queries.shape[1] != corpus.shape[1]:
            raise VembedError(f"query and document embeddings differ in size ({queries.shape[1]} vs "
                              f"{corpus.shape[1]}); both roles must map into the same space")
        if self.dim is None:
            return embedded
        return Embedded(truncate(queries, self.dim), truncate(corpus, self.dim), embedded.name,
                        embedded.model_info)

    def search(self, embedded: Embedded, data: TaskData, k: int, options: EvalOptions) -> tuple[Any, dict[str, Any]]:
        from vembed_bench.search import describe_search, search

        exclude, candidates = search_constraints(data)
        found = search(embedded.queries, embedded.corpus, k, backend=options.backend, index=options.index,
                       exclude=exclude, candidates=candidates)
        return found, {**describe_search(options.backend, options.index), **search_info(found)}

    def exact_reference(self, embedded: Embedded, data: TaskData, k: int, rows: np.ndarray,
                        options: EvalOptions) -> tuple[np.ndarray, str]:
        """Exact top-k positions of the queries at ``rows`` (to measure an approximate search's recall):
        flat search with the same backend on the same vectors, in blocks if the corpus is mapped."""
        from vembed_bench.search import search

        exclude, candidates = search_constraints(data)
        found = search(embedded.queries[rows], embedded.corpus, k, backend=options.backend, index="flat",
                       exclude=exclude[rows] if exclude is not None else None,
                       candidates=[candidates[i] for i in rows] if candidates is not None else None)
        return found.indices, f"{found.backend}/flat (exact)"

    def embedding_dim(self, embedded: Embedded) -> int:
        return int(embedded.queries.shape[1])


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` columns, renormalised to unit length."""
    from vembed_bench.encoders.base import l2_normalize

    if dim > embeddings.shape[1]:
        raise VembedError(f"--dims {dim} is larger than the model's {embeddings.shape[1]} dimensions")
    return l2_normalize(embeddings[:, :dim])
