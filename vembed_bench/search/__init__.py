"""Top-k inner-product search over L2-normalised float32 embeddings.

``search(queries, corpus, k)`` returns a :class:`SearchResult`; exact by default,
with deterministic tie order (score descending, then lower corpus position; see
:mod:`vembed_bench.search.base`). Backends, in ``auto`` preference order:

- ``faiss``: faiss brute force (GPU when faiss sees one), or opt-in approximate
  indexes ``hnsw``, ``ivf`` or any faiss ``index_factory`` string;
- ``torch``: blocked matmul + topk on CUDA (``torch:cpu`` forces the CPU);
- ``numpy``: blocked BLAS matmul with a threshold pre-filter; always available.

A backend name may carry a device after a colon: ``faiss:cpu``, ``faiss:gpu``,
``torch:cpu``, ``torch:cuda:1``. Heavy libraries load only when a backend is
resolved, so importing this package is cheap.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search.base import SearchBackend, SearchResult

__all__ = [
    "BACKENDS",
    "SearchBackend",
    "SearchResult",
    "available_backends",
    "resolve_backend",
    "search",
]

BACKENDS = ("faiss", "torch", "numpy")
"""Backend names in the order ``auto`` tries them."""


def _faiss_importable() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda_available() -> bool:
    from vembed_bench.search.torch_backend import cuda_available

    return cuda_available()


def available_backends() -> list[str]:
    """Backend names usable here (in ``auto`` preference order).

    ``torch`` is listed only with CUDA; ``torch:cpu`` works wherever torch is installed.
    """
    names = []
    if _faiss_importable():
        names.append("faiss")
    if _cuda_available():
        names.append("torch")
    names.append("numpy")
    return names


def _unknown(name: object) -> VembedError:
    return VembedError(
        f"unknown search backend {name!r}; choose auto, {', '.join(BACKENDS)} "
        "(optionally with a device, e.g. torch:cpu or faiss:cpu)"
    )


@lru_cache(maxsize=None)
def _resolve(base: str, device: str | None) -> SearchBackend:
    if base == "auto":
        if device is not None:
            raise VembedError(f"search backend 'auto' takes no device, got 'auto:{device}'")
        if _faiss_importable():
            return _resolve("faiss", None)
        if _cuda_available():
            return _resolve("torch", None)
        return _resolve("numpy", None)
    if base == "numpy":
        if device not in (None, "cpu"):
            raise VembedError(f"search backend 'numpy' runs on the CPU only, got device {device!r}")
        from vembed_bench.search.numpy_backend import NumpyBackend

        return NumpyBackend()
    if base == "faiss":
        if device not in (None, "cpu", "gpu"):
            raise VembedError(f"search backend 'faiss' takes device cpu or gpu, got {device!r}")
        if not _faiss_importable():
            raise VembedError(
                "search backend 'faiss' needs faiss: install faiss-cpu (or faiss-gpu), "
                "or use backend 'numpy'"
            )
        from vembed_bench.search.faiss_backend import FaissBackend

        return FaissBackend(device)
    if base == "torch":
        try:
            import torch
        except ImportError:
            raise VembedError(
                "search backend 'torch' needs torch: install the 'torch' extra, or use 'numpy'"
            ) from None
        if device is None:
            device = "cuda"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise VembedError(
                    "search backend 'torch' needs CUDA, which is not available here; "
                    "use 'faiss' or 'numpy' (or 'torch:cpu' to force the CPU)"
                )
            try:
                dev = torch.device(device)
            except (RuntimeError, ValueError):
                raise VembedError(f"search backend 'torch' got a bad device {device!r}") from None
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise VembedError(
                    f"search backend 'torch:{device}': only {torch.cuda.device_count()} CUDA device(s)"
                )
        elif device != "cpu":
            raise VembedError(f"search backend 'torch' takes device cuda[:N] or cpu, got {device!r}")
        from vembed_bench.search.torch_backend import TorchBackend

        return TorchBackend(device)
    raise _unknown(base)


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
