"""Encoders around objects the user already holds.

Library users often have a model object rather than a folder: a
SentenceTransformer they loaded or fine-tuned, or their own class with an
``encode`` method (the MTEB/BEIR style ``encode_queries`` / ``encode_corpus``
and the sentence-transformers style ``encode_query`` / ``encode_document``
are also recognised). We apply the same prompt / instruction / title rules as
for folders, call the most specific method the object has, and normalise.

An arbitrary object's weights cannot be hashed, so its fingerprint is its
class and name: the embedding cache is then keyed by name, and a warning
says so (rename the model after changing it, or clear the cache).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.base import Encoder, l2_normalize
from vembed_bench.encoders.input_keys import check_role, text_key
from vembed_bench.encoders.runtime import library_versions
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size
from vembed_bench.encoders.text_inputs import (
    DOCUMENT,
    QUERY,
    format_item,
    format_items,
    refuse_images,
    resolve_prompts,
)
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

# Most specific first. encode_corpus follows BEIR: it receives {"title", "text"} dicts.
_METHODS = {
    QUERY: ("encode_queries", "encode_query", "encode"),
    DOCUMENT: ("encode_corpus", "encode_document", "encode"),
}


def wrap_model(obj: Any, options: EncoderOptions = EncoderOptions()) -> Encoder:
    """An :class:`Encoder` for a user object (``options``: name, prompts, max_length, show_progress).

    A SentenceTransformer goes to :class:`STEncoder` (its prompts, Router and
    fingerprint are handled there; one loaded from a local folder and unchanged
    is that folder); an object that already implements the Encoder protocol is
    returned unchanged; anything else with an ``encode``-like method is wrapped
    in :class:`WrappedEncoder`.
    """
    if is_sentence_transformer(obj):
        from vembed_bench.encoders.st_encoder import STEncoder

        return STEncoder(options=options, model=obj)
    if isinstance(obj, Encoder) and not isinstance(obj, type):
        return obj
    return WrappedEncoder(obj, options)


class WrappedEncoder(TextEncoderBase):
    """Any object with ``encode(list[str])`` (or the query/document variants)."""

    kind = "wrapped"

    def __init__(self, obj: Any, options: EncoderOptions = EncoderOptions()) -> None:
        self.obj = obj
        self.cls_name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        self.name = options.name or type(obj).__name__
        self.show_progress = options.show_progress
        self._methods = {role: _find_method(obj, names) for role, names in _METHODS.items()}
        if self._methods[QUERY] is None or self._methods[DOCUMENT] is None:
            raise VembedError(
                f"{self.cls_name} has no encode(list[str]) method (nor encode_queries/encode_corpus "
                "or encode_query/encode_document); it cannot be used as an encoder"
            )
        self.prompts = resolve_prompts(options.query_prompt, options.document_prompt, {})
        self.dim: int | None = None

    def input_key(self, item: Item, role: str) -> str:
        """The formatted text; with the role when queries and documents go to different methods."""
        method_name = self._methods[check_role(role)]
        prompt = self.prompts[role]
        if method_name == "encode_corpus":  # the BEIR {"title", "text"} form
            body = format_item(Item(id=item.id, text=item.text, instruction=item.instruction), prompt)
            return text_key(json.dumps([item.title, body], ensure_ascii=False), role=role)
        role_specific = self._methods[QUERY] != self._methods[DOCUMENT]
        return text_key(format_item(item, prompt), role=role if role_specific else None)

    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        check_batch_size(batch_size)
        method_name = self._methods[role]
        assert method_name is not None
        encoder = f"{self.name} (wrapped {self.cls_name})"
        prompt = self.prompts[role]
        if method_name == "encode_corpus":
            refuse_images(items, encoder=encoder)
            # BEIR convention: the model joins title and text itself.
            body = [format_item(Item(id=d.id, text=d.text, instruction=d.instruction), prompt) for d in items]
            inputs: list[Any] = [{"title": d.title, "text": t} for d, t in zip(items, body)]
        else:
            inputs = format_items(items, prompt, encoder=encoder)
        if not inputs:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        method = getattr(self.obj, method_name)
        raw = method(inputs, **_accepted(method, batch_size=batch_size))
        emb = _to_numpy(raw)
        if emb.ndim != 2 or emb.shape[0] != len(inputs):
            raise VembedError(
                f"{self.cls_name}.{method_name} returned shape {tuple(emb.shape)} for "
                f"{len(inputs)} inputs; expected ({len(inputs)}, dim)"
            )
        self.dim = int(emb.shape[1])
        return l2_normalize(emb)

    def weights_digest(self) -> str | None:
        """Unknown: an arbitrary object's weights cannot be hashed."""
        return None

    def _fingerprint_content(self) -> str:
        warnings.warn(
            f"cannot hash the weights of {self.cls_name}; cached embeddings are keyed by the "
            f"name {self.name!r}: give the model a new name after changing it",
            stacklevel=3,
        )
        return hashlib.sha256(f"{self.cls_name}\0{self.name}".encode()).hexdigest()

    def describe(self) -> dict[str, Any]:
        """Type, wrapped class, methods used, prompts, dim and library versions."""
        return {
            "type": self.kind,
            "name": self.name,
            "class": self.cls_name,
            "methods": dict(self._methods),
            "prompts": dict(self.prompts),
            "dim": self.dim,
            "normalize": True,
            "versions": library_versions(),
        }


def is_sentence_transformer(obj: Any) -> bool:
    """Whether ``obj`` is a SentenceTransformer (checked without importing the library)."""
    # Only check when the library is already imported: a user holding a
    # SentenceTransformer has imported it; nobody else should pay for the import.
    module = sys.modules.get("sentence_transformers")
    cls = getattr(module, "SentenceTransformer", None) if module is not None else None
    return cls is not None and isinstance(obj, cls)


def _find_method(obj: Any, names: Sequence[str]) -> str | None:
    for name in names:
        if callable(getattr(obj, name, None)):
            return name
    return None


def _accepted(method: Callable[..., Any], **kwargs: Any) -> dict[str, Any]:
    """Only the keyword arguments the method's signature takes (or all, with ``**kwargs``)."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _to_numpy(raw: Any) -> np.ndarray:
    """numpy array, torch tensor, or a list of rows of either -> float32 2-D array."""
    if hasattr(raw, "detach"):  # torch.Tensor
        return raw.detach().float().cpu().numpy()
    if isinstance(raw, (list, tuple)) and raw and hasattr(raw[0], "detach"):
        return np.stack([r.detach().float().cpu().numpy() for r in raw])
    return np.asarray(raw, dtype=np.float32)
