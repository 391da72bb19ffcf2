"""Top-k inner-product search over L2-normalised float32 embeddings.

``search(queries, corpus, k)`` returns a :class:`SearchResult`; exact by default,
with deterministic tie order (score descending, then lower corpus position; see
:mod:`vembed_bench.search.base`). Backends, in ``auto`` preference order:

- ``faiss``: faiss brute force (GPU when faiss sees one), or opt-in approximate
  indexes ``hnsw``, ``ivf`` or any faiss ``index_factory`` string;
- ``torch``: blocked matmul + topk on CUDA (``torch:cpu`` forces the CPU);
- ``numpy``: blocked BLAS matmul with a threshold pre-filter; always available.

A backend name may carry a device after a colon: ``faiss:cpu``, ``faiss:gpu``,
``torch:cpu``, ``torch:cuda:1``. Backends are entries of :data:`SEARCH_BACKENDS`;
heavy libraries load only when a backend is resolved, so importing this
package is cheap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.registry import Registry
from vembed_bench.search.base import SearchBackend, SearchResult

__all__ = [
    "BACKENDS",
    "SEARCH_BACKENDS",
    "SearchBackend",
    "SearchResult",
    "available_backends",
    "resolve_backend",
    "search",
]

SEARCH_BACKENDS: Registry[type] = Registry("search backend")
"""Backend classes in ``auto`` preference order. Each has ``available() -> bool`` (usable here
without a device choice) and ``create(device) -> backend`` (validates the device, one-line errors)."""
SEARCH_BACKENDS.lazy("faiss", "vembed_bench.search.faiss_backend:FaissBackend")
SEARCH_BACKENDS.lazy("torch", "vembed_bench.search.torch_backend:TorchBackend")
SEARCH_BACKENDS.lazy("numpy", "vembed_bench.search.numpy_backend:NumpyBackend")

BACKENDS = tuple(SEARCH_BACKENDS.names())
"""Backend names in the order ``auto`` tries them (those registered at import)."""


def available_backends() -> list[str]:
    """Backend names usable here (in ``auto`` preference order).

    ``torch`` is listed only with CUDA; ``torch:cpu`` works wherever torch is installed.
    """
    return [entry.name for entry in SEARCH_BACKENDS.entries() if entry.load().available()]


def _unknown(name: object) -> VembedError:
    return VembedError(
        f"unknown search backend {name!r}; choose auto, {', '.join(SEARCH_BACKENDS.names())} "
        "(optionally with a device, e.g. torch:cpu or faiss:cpu)"
    )


@lru_cache(maxsize=None)
def _resolve(base: str, device: str | None) -> SearchBackend:
    if base == "auto":
        if device is not None:
            raise VembedError(f"search backend 'auto' takes no device, got 'auto:{device}'")
        # The first available one; later ones are not even asked (asking torch imports it).
        first = SEARCH_BACKENDS.find(lambda entry: entry.load().available())
        if first is None:
            raise VembedError("no search backend is available here; install numpy, faiss or torch")
        return _resolve(first.name, None)
    if base not in SEARCH_BACKENDS:
        raise _unknown(base)
    return SEARCH_BACKENDS.get(base).create(device)


def resolve_backend(name: str = "auto") -> SearchBackend:
    """The backend for ``name`` (``auto``, ``faiss``, ``torch``, ``numpy``, optional ``:device``).

    Raises :class:`VembedError` with a one-line message when the name is unknown
    or the backend cannot run here. Backends are cached per name.
    """
    if not isinstance(name, str) or not name.strip():
        raise _unknown(name)
    base, _, device = name.strip().lower().partition(":")
    return _resolve(base, device or None)


def search(
    queries: np.ndarray,
    corpus: np.ndarray,
    k: int,
    *,
    backend: str = "auto",
    index: str = "flat",
    exclude: np.ndarray | None = None,
    candidates: Sequence[np.ndarray] | None = None,
    **index_options: Any,
) -> SearchResult:
    """Top-``k`` corpus rows by inner product for every query row.

    ``exclude[i]`` (``-1`` = none) is a corpus position removed from query i's
    results, e.g. the query itself in image-to-image retrieval; ``candidates[i]``
    restricts query i to those corpus positions (scored exactly, duplicates
    ignored). ``index`` is ``flat`` (exact), or with faiss ``hnsw``, ``ivf`` or a
    factory string; ``index_options`` tune it (``ef_search``, ``ef_construction``,
    ``M``, ``nlist``, ``nprobe``) and ``memory_mb`` bounds temporary score blocks.
    """
    return resolve_backend(backend).search(
        queries, corpus, k, index=index, exclude=exclude, candidates=candidates, **index_options
    )
