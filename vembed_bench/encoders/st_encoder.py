"""sentence-transformers checkpoints, run by the library itself.

A sentence-transformers folder can chain modules we do not re-implement
(Dense projections, Routers with separate query/document towers, prompt-aware
pooling that drops the prompt tokens), so the library's own ``encode_query`` /
``encode_document`` do the work. We only decide the prompt (the user's, else
the model's stored one) and pass it as ``prompt=`` so prompt-aware pooling
still knows where the prompt ends. On CPU we also split the texts into
token-length groups so that each ``encode`` call gets a batch size that keeps a
batch within :data:`~vembed_bench.encoders.runtime.CPU_BATCH_TOKENS` padded
tokens (same outputs; with the default bound and batch size it is one group).
This module is also used for SentenceTransformer objects the
user already holds (see ``wrapped.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.base import l2_normalize
from vembed_bench.encoders.fingerprint import folder_digest, state_dict_digest
from vembed_bench.encoders.input_keys import check_role, text_key
from vembed_bench.encoders.runtime import (
    CPU_BATCH_TOKENS,
    library_versions,
    load_errors,
    load_failure,
    progress_bar,
    role_label,
    torch_dtype,
)
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, resolve_prompts, split_prefix
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

__all__ = ["STEncoder", "has_router", "state_dict_digest"]


def load_st_folder(source: str | Path, options: EncoderOptions = EncoderOptions(), *,
                   folder: Path | None = None) -> Any:
    """A sentence-transformers folder: through our HF encoder when it is a plain
    Transformer + Pooling (+ Normalize) stack (the same vectors, no import of the library,
    a faster forward; see :func:`~vembed_bench.encoders.folders.is_plain_st_folder`),
    else through the library. ``--model-type sentence-transformers`` always takes the library."""
    from vembed_bench.encoders import folders

    meta = Path(folder) if folder is not None else Path(source)
    if not options.model_type and meta.is_dir() and folders.is_plain_st_folder(meta):
        from vembed_bench.encoders.hf_encoder import HFEncoder

        return HFEncoder(source, options, folder=folder)
    if options.max_batch_tokens is not None:
        raise VembedError("max_batch_tokens applies to the hf encoder; this sentence-transformers folder "
                          "runs through the library (it has modules the hf encoder does not compute)")
    return STEncoder(source, options, folder=folder)


PROGRESS_BATCHES = 64
"""Batches per call to the library: enough for its length sorting to work (at 16, an H200 encoded
MiniLM at 0.92x of one whole-list call), few enough for the bar to move."""


class STEncoder(TextEncoderBase):
    """A ``SentenceTransformer`` model behind the :class:`Encoder` protocol."""

    kind = "sentence-transformers"

    def __init__(
        self,
        source: str | Path | None = None,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
        model: Any = None,
    ) -> None:
        """Load ``source`` (folder or hub id), or adopt an already loaded ``model``.

        An adopted model whose weights and modules are those of the local folder
        it was loaded from gets that folder (see
        :func:`vembed_bench.encoders.identity.source_folder`): the same name,
        weights digest and fingerprint as loading the folder itself.
        """
        if options.pooling is not None:
            raise VembedError(
                "pooling is fixed by the sentence-transformers folder (its Pooling module); "
                "use --model-type hf to choose the pooling yourself"
            )
        if (source is None) == (model is None):
            raise ValueError("pass exactly one of source or model")
        if model is not None:
            if options.dtype is not None or options.device is not None:
                raise VembedError("device and dtype cannot be changed on a wrapped model object")
            from vembed_bench.encoders.identity import source_folder

            self.model = model
            adopted = source_folder(model, trust_remote_code=options.trust_remote_code)
            self._locate(adopted, adopted, options)
            self.name = self.name or type(model).__name__
            self.device = str(model.device)
            self.dtype = _dtype_name(model)
        else:
            self._locate(source, folder, options)
            self._place(options)
            self.model = self._load()
        if options.max_length is not None:
            self.model.max_seq_length = int(options.max_length)
        self.max_length = getattr(self.model, "max_seq_length", None)
        self.prompts = resolve_prompts(
            options.query_prompt, options.document_prompt, dict(getattr(self.model, "prompts", None) or {})
        )
        self.role_specific = has_router(self.model)

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(
                self.source,
                device=self.device,
                trust_remote_code=self.trust_remote_code,
                model_kwargs={"dtype": torch_dtype(self.dtype)},
            )
        except load_errors() as exc:
            raise load_failure(self.source, "a sentence-transformers model", exc) from None

    # -- encoding --------------------------------------------------------------------------
    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        check_batch_size(batch_size)
        texts, prefix = split_prefix(items, self.prompts[role], encoder=f"{self.name} ({self.kind})")
        if not texts:
            return np.zeros((0, _dimension(self.model) or 0), dtype=np.float32)
        method = {QUERY: "encode_query", DOCUMENT: "encode_document"}[role]
        encode = getattr(self.model, method, None) or self.model.encode  # ST < 5 has only encode
        out: np.ndarray | None = None
        with progress_bar(len(texts), role_label(role, items), self.show_progress) as bar:
            for idx, size in self._groups(texts, prefix, batch_size):
                # Calls of PROGRESS_BATCHES batches each, so our labelled bar moves (the
                # library's own bar only counts unlabelled "Batches" of one call).
                step = size * PROGRESS_BATCHES
                for start in range(0, len(idx), step):
                    part = idx[start:start + step]
                    emb = self._call(encode, [texts[i] for i in part], prefix, size, False)
                    if out is None:
                        out = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
                    out[part] = emb
                    bar.update(len(part))
        assert out is not None
        return l2_normalize(out)

    @staticmethod
    def _call(encode: Any, texts: list[str], prefix: str | None, batch_size: int, bar: bool) -> Any:
        # prompt="" (not None) so the library never adds a stored prompt we did not choose.
        return encode(
            texts,
            prompt=prefix or "",
            batch_size=batch_size,
            show_progress_bar=bar,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )

    def _groups(
        self, texts: list[str], prefix: str | None, batch_size: int
    ) -> list[tuple[list[int], int]]:
        """Length groups with a CPU-friendly batch size each: ``[(indices, batch_size)]``.

        sentence-transformers has one batch size for a whole call, so to keep
        every batch within ``CPU_BATCH_TOKENS`` padded tokens the texts are
        sorted by token length and cut into groups that share
        ``min(batch_size, CPU_BATCH_TOKENS // longest)``; each group is one
        ``encode`` call (at most ``batch_size`` calls). Off CPU, or for models
        without a text tokenizer, it is a single call.
        """
        whole = [(list(range(len(texts))), batch_size)]
        if not self.device.startswith("cpu") or len(texts) <= batch_size:
            return whole
        limit = self.max_length or 512
        if CPU_BATCH_TOKENS // limit >= batch_size:
            return whole  # even max-length texts fit: no need to tokenize twice
        try:
            tokenizer = self.model.tokenizer
            lengths = [
                len(ids)
                for ids in tokenizer(list(texts), truncation=True, max_length=limit)["input_ids"]
            ]
            if prefix:
                extra = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
                lengths = [min(limit, n + extra) for n in lengths]
        except Exception:  # noqa: BLE001 - no text tokenizer (static, CLIP, routers): one call
            return whole
        order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        groups: list[tuple[list[int], int]] = []
        for i in order:
            size = max(1, min(batch_size, CPU_BATCH_TOKENS // max(1, lengths[i])))
            if groups and groups[-1][1] == size:
                groups[-1][0].append(i)
            else:
                groups.append(([i], size))
        return groups

    def input_key(self, item: Item, role: str) -> str:
        """The (prompt, text) pair the library receives (prompt-aware pooling tells them apart),
        and the role when a Router sends queries and documents through different modules."""
        prompt = self.prompts[check_role(role)]
        texts, prefix = split_prefix([item], prompt, encoder=f"{self.name} ({self.kind})")
        return text_key(texts[0], prefix=prefix, role=role if self.role_specific else None, pair=True)

    # -- provenance ------------------------------------------------------------------------
    def _content_digest(self) -> str:
        if self.folder is not None:
            return folder_digest(self.folder)
        return state_dict_digest(self.model)

    def _settings(self) -> dict[str, Any]:
        settings = {**super()._settings(), "max_length": self.max_length, "dtype": self.dtype}
        if self.folder is None:
            # Without a folder the module chain (pooling, dense, normalize) is only
            # visible in the model's repr, which lists each module's config.
            settings["modules"] = repr(self.model)
        truncate_dim = getattr(self.model, "truncate_dim", None)
        if truncate_dim is not None:  # set on an object in memory: fewer dimensions than its folder's
            settings["truncate_dim"] = truncate_dim
        return settings

    def describe(self) -> dict[str, Any]:
        """Type, source, pooling, prompts, max_length, dtype, device, dim and library versions."""
        return {
            "type": self.kind,
            "name": self.name,
            "path": self.source,
            "folder": str(self.folder) if self.folder is not None else None,
            "pooling": _pooling_name(self.model),
            "prompts": dict(self.prompts),
            "max_length": self.max_length,
            "dtype": self.dtype,
            "device": self.device,
            "dim": _dimension(self.model),
            "normalize": True,
            "engine": "sentence-transformers",
            "trust_remote_code": self.trust_remote_code,
            "versions": library_versions(),
        }


def has_router(model: Any) -> bool:
    """Whether queries and documents take different module paths (a Router, or the older Asym)."""
    modules = getattr(model, "modules", None)
    return callable(modules) and any(type(m).__name__ in ("Router", "Asym") for m in modules())


def _dimension(model: Any) -> int | None:
    getter = getattr(model, "get_embedding_dimension", None) or getattr(
        model, "get_sentence_embedding_dimension", None
    )  # renamed in sentence-transformers 6
    return getter() if getter is not None else None


def _dtype_name(model: Any) -> str:
    dtype = getattr(model, "dtype", None)
    return str(dtype).removeprefix("torch.") if dtype is not None else "unknown"


def _pooling_name(model: Any) -> str | None:
    for module in getattr(model, "_modules", {}).values():
        mode = getattr(module, "pooling_mode", None)
        if mode is not None:
            return mode if isinstance(mode, str) else "+".join(mode)
    return None
