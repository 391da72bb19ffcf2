"""The encoder protocol.

An encoder turns :class:`~vembed_bench.data.types.Item` lists into L2-normalised
float32 arrays, one row per item. Queries and documents are encoded by separate
methods because many models format them differently (prompts, instructions,
separate towers). Multi-vector encoders add ``encode_queries_multi`` /
``encode_documents_multi``.

Two optional methods (:class:`IdentifiedEncoder`) let a runner avoid work:
``weights_digest()`` names the weights without loading anything more, and
``input_key(item, role)`` says which (item, role) pairs share a vector. User
objects without them still work; the runner then falls back to the fingerprint
and to role + item content. :class:`EncoderBase` implements both for the
encoders of this package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError


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


@runtime_checkable
class IdentifiedEncoder(Encoder, Protocol):
    """An :class:`Encoder` that also names its weights and its inputs (both optional)."""

    def weights_digest(self) -> str | None:
        """A digest of the weights alone, without settings (``None``: cannot be known)."""
        ...

    def input_key(self, item: Item, role: str) -> str:
        """A string naming exactly what is computed for ``item`` as ``role`` ("query"/"document"):
        two pairs with the same key are guaranteed the same vector."""
        ...


class EncoderBase:
    """What the encoders of this package share: the weights digest and the fingerprint.

    Subclasses set ``kind``, ``name`` and ``folder`` and say what identifies the
    weights (``_content_digest``: by default the folder's content digest) and
    which settings change the output (``_settings``).
    """

    kind: str = "encoder"
    name: str = ""
    folder: Path | None = None
    device: str = "cpu"
    dtype: str = "float32"
    _fingerprint: str | None = None
    _weights_digest: str | None = None

    def weights_digest(self) -> str | None:
        """The digest of the weights alone, without settings (computed once): the folder's
        content digest, or the state-dict digest of an in-memory model."""
        if self._weights_digest is None:
            self._weights_digest = self._content_digest()
        return self._weights_digest

    def fingerprint(self) -> str:
        """sha256 of the weights and the output-changing settings; it keys the embedding cache."""
        if self._fingerprint is None:
            from vembed_bench.encoders.fingerprint import combine

            self._fingerprint = combine(self.kind, self._fingerprint_content(), self._settings())
        return self._fingerprint

    # -- for subclasses -------------------------------------------------------------------
    def _locate(self, source: str | Path | None, folder: str | Path | None, options: Any, *,
                need_folder: bool = False) -> None:
        """Set ``source``, ``folder`` (given, else ``source`` when it is a folder), the display
        ``name`` (the ``name`` option, else :func:`~vembed_bench.encoders.naming.display_name`)
        and the runtime flags every encoder keeps. ``need_folder``: ``source`` is the folder."""
        from vembed_bench.encoders.naming import display_name

        self.source = str(source) if source is not None else None
        local = Path(self.source).expanduser() if self.source else None
        if folder is not None:
            self.folder = Path(folder)
        else:
            self.folder = local if local is not None and (need_folder or local.is_dir()) else None
        self.name = options.name or (display_name(self.source, self.folder) if self.source else "")
        self.show_progress = options.show_progress
        self.trust_remote_code = options.trust_remote_code

    def _place(self, options: Any) -> None:
        """``device`` (the option, else the best available) and ``dtype`` (else bf16 on CUDA, fp32 elsewhere)."""
        from vembed_bench.encoders.runtime import pick_device, resolve_dtype

        self.device = pick_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)

    def _content_digest(self) -> str | None:
        if self.folder is None:
            raise VembedError(f"cannot fingerprint {self.name}: its files are not on disk")
        from vembed_bench.encoders.fingerprint import folder_digest

        return folder_digest(self.folder)

    def _fingerprint_content(self) -> str:
        """What the fingerprint hashes besides the settings: the weights digest by default."""
        digest = self.weights_digest()
        if digest is None:
            raise VembedError(f"cannot fingerprint {self.name}: its weights cannot be hashed")
        return digest

    def _settings(self) -> Mapping[str, Any]:
        return {}


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Return float32 rows of unit L2 norm (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return x / norms
