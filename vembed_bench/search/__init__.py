"""Top-k inner-product search over L2-normalised float32 embeddings.

``search(queries, corpus, k)`` returns a :class:`SearchResult`; exact by default,
with deterministic tie order (score descending, then lower corpus position; see
:mod:`vembed_bench.search.base`). Backends:

- ``faiss``: faiss brute force (GPU when faiss sees one), or opt-in approximate
  indexes ``hnsw``, ``ivf``, any faiss ``index_factory`` string or a binary one
  (``BFlat``, ``BIVF1024``...);
- ``torch``: blocked matmul + topk on CUDA (``torch:cpu`` forces the CPU);
- ``numpy``: blocked BLAS matmul with a threshold pre-filter; always available.

``auto`` picks faiss on GPUs, else torch on CUDA, else the faster of faiss and
numpy on this CPU (a one-time calibration; see :mod:`.choice`), and says why
(:func:`auto_choice`). A memory-mapped corpus (large cache entries) is searched
in blocks of rows, never all in memory (:mod:`.blocked`).

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
from vembed_bench.search.base import SearchBackend, SearchResult, normalize_index
from vembed_bench.search.choice import (
    AutoChoice,
    calibrate,
    decide,
    nvidia_or_amd_gpu_present,
    remembered_cpu_choice,
)

__all__ = [
    "BACKENDS",
    "SEARCH_BACKENDS",
    "AutoChoice",
    "SearchBackend",
    "SearchResult",
    "auto_choice",
    "available_backends",
    "describe_search",
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
    """A named backend (``auto`` is resolved to a name by :func:`auto_choice` first)."""
    if base not in SEARCH_BACKENDS:
        raise _unknown(base)
    return SEARCH_BACKENDS.get(base).create(device)


@lru_cache(maxsize=None)
def _auto(exact: bool) -> AutoChoice:
    """What ``auto`` stands for here (asked once per process; the CPU calibration once per machine).

    torch is only asked about CUDA where a GPU device node exists: importing it takes seconds.
    """
    available = [entry.name for entry in SEARCH_BACKENDS.entries()
                 if (entry.name != "torch" or nvidia_or_amd_gpu_present()) and entry.load().available()]
    if not available:
        raise VembedError("no search backend is available here; install numpy, faiss or torch")

    def faiss_gpus() -> int:
        from vembed_bench.search.faiss_backend import num_gpus

        return num_gpus() if "faiss" in available else 0

    def cpu_choice() -> AutoChoice:
        return remembered_cpu_choice(lambda: calibrate({name: _resolve(name, None) for name in ("faiss", "numpy")}))

    return decide(available, exact, faiss_gpus(), cpu_choice)


def auto_choice(index: str = "flat") -> AutoChoice:
    """The backend ``auto`` uses for ``index`` on this machine, and the reason."""
    return _auto(normalize_index(index) == "flat")


def _split_name(name: str) -> tuple[str, str | None]:
    if not isinstance(name, str) or not name.strip():
        raise _unknown(name)
    base, _, device = name.strip().lower().partition(":")
    if base == "auto" and device:
        raise VembedError(f"search backend 'auto' takes no device, got 'auto:{device}'")
    return base, device or None


def resolve_backend(name: str = "auto", index: str = "flat") -> SearchBackend:
    """The backend for ``name`` (``auto``, ``faiss``, ``torch``, ``numpy``, optional ``:device``).

    ``auto`` depends on the index (approximate ones need faiss; see
    :func:`auto_choice`). Raises :class:`VembedError` with a one-line message
    when the name is unknown or the backend cannot run here. Backends are
    cached per name.
    """
    base, device = _split_name(name)
    if base == "auto":
        return _resolve(auto_choice(index).backend, None)
    return _resolve(base, device)


def describe_search(name: str = "auto", index: str = "flat") -> dict[str, Any]:
    """Provenance of searches with backend ``name`` and ``index``: the backend's own
    description, and for ``auto`` which backend it chose and why (``auto_choice``)."""
    info = dict(resolve_backend(name, index).describe(index))
    if _split_name(name)[0] == "auto":
        info["auto_choice"] = auto_choice(index).record()
    return info


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
    ``M``, ``nlist``, ``nprobe``), ``memory_mb`` bounds temporary score blocks,
    and ``block_mb`` / ``block_rows`` the corpus rows held at once when the
    corpus is searched in blocks (a memory-mapped one always is).
    """
    return resolve_backend(backend, index).search(
        queries, corpus, k, index=index, exclude=exclude, candidates=candidates, **index_options
    )
