"""The encoder protocol.

An encoder turns :class:`~vembed_bench.data.types.Item` lists into L2-normalised
float32 arrays, one row per item. Queries and documents are encoded by separate
methods because many models format them differently (prompts, instructions,
separate towers). Multi-vector encoders will add their own method later.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from vembed_bench.data.types import Item


@runtime_checkable
class Encoder(Protocol):
    """What the evaluation pipeline needs from a model."""

    name: str

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Return an ``(len(items), dim)`` float32 array of unit-norm rows."""
        ...

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Return an ``(len(items), dim)`` float32 array of unit-norm rows."""
        ...

    def fingerprint(self) -> str:
        """A content hash of the weights and settings; it keys the embedding cache."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance for the result file: type, path, pooling, prompts, dtype, device..."""
        ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return x / norms
