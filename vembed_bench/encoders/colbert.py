"""ColBERT-style multi-vector text encoder: one projected, unit-norm vector per token.

A Hugging Face encoder's last hidden states go through a linear projection
(``dim``, 128 in ColBERTv2) and are L2-normalised per token; padding is
dropped, so each text becomes a ``(tokens, dim)`` matrix scored with MaxSim
(:mod:`vembed_bench.search.maxsim`). The projection is read from the folder:
``colbert_linear.safetensors`` (key ``weight``, ``(dim, hidden)``), or the
PyLate / sentence-transformers layout ``1_Dense/model.safetensors``
(``linear.weight``). Without one, the raw hidden states are used (``dim`` =
hidden size), which is what an untrained baseline means.

Batching and collation are :class:`HFEncoder`'s (exact-length batches).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.hf_encoder import _CHUNK, HFEncoder, _batches
from vembed_bench.encoders.text_base import check_batch_size
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, format_items
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

_PROJECTIONS = (("colbert_linear.safetensors", "weight"), ("1_Dense/model.safetensors", "linear.weight"))


class ColBERTEncoder(HFEncoder):
    """Token embeddings of an encoder model, projected and normalised (late interaction)."""

    kind = "colbert"
    multi_vector = True

    def __init__(self, source: str | Path, options: EncoderOptions = EncoderOptions(), *,
                 folder: Path | None = None) -> None:
        from vembed_bench.encoders.loader import as_options

        options = as_options(options)
        if options.pooling is None:
            options = options.with_(pooling="cls")  # unused: every token is kept
        super().__init__(source, options, folder=folder)
        self.projection = self._load_projection()
        self.dim = int(self.projection.shape[0]) if self.projection is not None else self.dim

    def _load_projection(self) -> Any:
        if self.folder is None:
            return None
        from safetensors.torch import load_file

        for name, key in _PROJECTIONS:
            path = self.folder / name
            if path.is_file():
                tensors = load_file(str(path))
                if key not in tensors:
                    raise VembedError(f"{path}: no tensor {key!r} (found {', '.join(tensors)})")
                weight = tensors[key].to(self.device, dtype=self.model.dtype)
                hidden = getattr(self.model.config, "hidden_size", weight.shape[1])
                if weight.ndim != 2 or weight.shape[1] != hidden:
                    raise VembedError(f"{path}: projection shape {tuple(weight.shape)} does not fit hidden size {hidden}")
                return weight
        return None

    # -- multi-vector encoding -------------------------------------------------------------
    def encode_queries_multi(self, items: Sequence[Item], *, batch_size: int = 32) -> list[np.ndarray]:
        return self.encode_tokens(format_items(items, self.prompts[QUERY], encoder=self.name), batch_size)

    def encode_documents_multi(self, items: Sequence[Item], *, batch_size: int = 32) -> list[np.ndarray]:
        return self.encode_tokens(format_items(items, self.prompts[DOCUMENT], encoder=self.name), batch_size)

    def encode_tokens(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """One ``(real tokens, dim)`` float32 matrix of unit rows per text, in input order."""
        import torch

        check_batch_size(batch_size)
        out: list[np.ndarray | None] = [None] * len(texts)
        with torch.inference_mode():
            for start in range(0, len(texts), _CHUNK):
                chunk = list(range(start, min(start + _CHUNK, len(texts))))
                enc = self.tokenizer([texts[i] for i in chunk], truncation=True, max_length=self.max_length,
                                     padding=False, return_attention_mask=False)
                lengths = [len(ids) for ids in enc["input_ids"]]
                by_len = sorted(range(len(chunk)), key=lambda j: -lengths[j])
                for sel in _batches(by_len, lengths, batch_size, self.max_batch_tokens):
                    features = self._collate(enc, sel, lengths)
                    output = self.model(**features)
                    hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
                    if self.projection is not None:
                        hidden = hidden @ self.projection.T
                    hidden = torch.nn.functional.normalize(hidden.float(), p=2.0, dim=-1)
                    mask = features["attention_mask"].bool()
                    for r, j in enumerate(sel):
                        out[chunk[j]] = hidden[r][mask[r]].cpu().numpy()
        return [o for o in out]  # type: ignore[misc]

    # The single-vector path does not apply: say so instead of pooling silently.
    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        raise VembedError(f"{self.name} is a multi-vector (late interaction) model; "
                          "evaluate it with vembed_bench.evaluate (MaxSim search)")

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "multi_vector": True, "dim": self.dim,
                "projection": self.projection is not None}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "multi_vector": True, "dim": self.dim,
                "projection": self.projection is not None}
