"""What every text encoder here shares: role dispatch and the input key of a text.

Subclasses say how to turn a role's items into vectors (``_encode_role``),
what content identifies the weights (``_content_digest``) and which settings
change the output (``_settings``); this class and
:class:`~vembed_bench.encoders.base.EncoderBase` turn that into the
:class:`~vembed_bench.encoders.base.Encoder` protocol.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.base import EncoderBase
from vembed_bench.encoders.input_keys import check_role, text_key
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, format_item


class TextEncoderBase(EncoderBase):
    """Base class: ``kind``, ``name`` and ``prompts`` are set by subclasses."""

    kind: str = "text"
    prompts: Mapping[str, str | None] = {}
    show_progress: bool = True

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Queries under the query prompt; ``(len(items), dim)`` float32, unit-norm rows."""
        return self._encode_role(items, QUERY, batch_size)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Documents (``title + " " + text``) under the document prompt."""
        return self._encode_role(items, DOCUMENT, batch_size)

    def input_key(self, item: Item, role: str) -> str:
        """The exact string the model sees for ``item`` as ``role`` (its prompt applied)."""
        return text_key(format_item(item, self.prompts[check_role(role)]))

    # -- for subclasses -------------------------------------------------------------------
    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {"prompts": dict(self.prompts), "normalize": True}


def check_batch_size(batch_size: int) -> int:
    """Reject a non-positive batch size with a one-line error."""
    from vembed_bench.errors import VembedError

    if not isinstance(batch_size, int) or batch_size < 1:
        raise VembedError(f"batch size must be a positive integer, got {batch_size!r}")
    return batch_size
