"""What every text encoder here shares: role dispatch and a memoised fingerprint.

Subclasses say how to turn a role's items into vectors (``_encode_role``),
what content identifies the weights (``_content_digest``) and which settings
change the output (``_settings``); this class turns that into the
:class:`~vembed_bench.encoders.base.Encoder` protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.fingerprint import combine
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY


class TextEncoderBase:
    """Base class: ``kind``, ``name`` and ``prompts`` are set by subclasses."""

    kind: str = "text"
    name: str = ""
    prompts: Mapping[str, str | None] = {}
    show_progress: bool = True
    _fingerprint: str | None = None

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Queries under the query prompt; ``(len(items), dim)`` float32, unit-norm rows."""
        return self._encode_role(items, QUERY, batch_size)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Documents (``title + " " + text``) under the document prompt."""
        return self._encode_role(items, DOCUMENT, batch_size)

    def fingerprint(self) -> str:
        """sha256 of the weights' content and the output-changing settings (computed once)."""
        if self._fingerprint is None:
            self._fingerprint = combine(self.kind, self._content_digest(), self._settings())
        return self._fingerprint

    # -- for subclasses -------------------------------------------------------------------
    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def _content_digest(self) -> str:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {"prompts": dict(self.prompts), "normalize": True}


def default_name(source: str | Path) -> str:
    """A short display name: the folder's name, or the hub id as given."""
    text = str(source).rstrip("/\\")
    path = Path(text)
    return path.name if path.exists() else text


def check_batch_size(batch_size: int) -> int:
    """Reject a non-positive batch size with a one-line error."""
    from vembed_bench.errors import VembedError

    if not isinstance(batch_size, int) or batch_size < 1:
        raise VembedError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size
