"""ColPali / ColQwen2 (late interaction over page images) through transformers' own classes.

transformers ships ``ColPaliForRetrieval`` / ``ColQwen2ForRetrieval`` and their
processors, which add the models' own prompts (the visual prompt prefix for
images; ``Query: `` and the query augmentation tokens for queries) and return
unit-norm token embeddings. This wrapper only batches items through them and
keeps each item's real tokens (``attention_mask``) as a ``(tokens, dim)``
matrix for MaxSim (:mod:`vembed_bench.evaluation.multivector`).

Items with an image are embedded from the image alone (the page), as in
ColPali; text items (queries, or text documents) go through the query path.
Images are opened with the VLM module's small helper.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders import folders
from vembed_bench.encoders.input_keys import check_role, image_key, text_key
from vembed_bench.encoders.multivector_types import is_colvision_folder  # noqa: F401 - its old home
from vembed_bench.encoders.runtime import library_versions, torch_dtype
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, item_text, with_instruction
from vembed_bench.encoders.vlm_encoder import load_rgb
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

_CLASSES = {"colpali": "ColPaliForRetrieval", "colqwen2": "ColQwen2ForRetrieval"}


class ColVisionEncoder(TextEncoderBase):
    """Multi-vector ColPali / ColQwen2 embeddings of queries and page images."""

    kind = "colvision"
    multi_vector = True

    def __init__(self, source: str | Path, options: EncoderOptions = EncoderOptions(), *,
                 folder: Path | None = None) -> None:
        import transformers

        from vembed_bench.encoders.loader import as_options

        options = as_options(options)
        for name in ("pooling", "query_prompt", "document_prompt", "max_length"):
            if getattr(options, name) is not None:
                raise VembedError(f"--{name.replace('_', '-')} does not apply to ColPali/ColQwen2 models: "
                                  "their processor adds the model's own prompts")
        self._locate(source, folder, options)
        self.prompts = {QUERY: "", DOCUMENT: ""}
        cfg = folders.hf_config(self.folder) if self.folder is not None else None
        model_type = str((cfg or {}).get("model_type", "")).lower()
        if model_type not in _CLASSES:
            raise VembedError(f"{self.source} is not a ColPali/ColQwen2 checkpoint (model_type {model_type!r})")
        self._place(options)
        model_cls = getattr(transformers, _CLASSES[model_type])
        self.processor = transformers.AutoProcessor.from_pretrained(
            str(options.processor) if options.processor else self.source)
        self.model = model_cls.from_pretrained(self.source, dtype=torch_dtype(self.dtype)).to(self.device).eval()
        self.dim = int(getattr(self.model.config, "embedding_dim", 0)) or None

    def encode_queries_multi(self, items: Sequence[Item], *, batch_size: int = 8) -> list[np.ndarray]:
        return self._encode(items, batch_size)

    def encode_documents_multi(self, items: Sequence[Item], *, batch_size: int = 8) -> list[np.ndarray]:
        return self._encode(items, batch_size)

    def _encode(self, items: Sequence[Item], batch_size: int) -> list[np.ndarray]:
        import torch

        check_batch_size(batch_size)
        out: list[np.ndarray | None] = [None] * len(items)
        groups = {"image": [i for i, it in enumerate(items) if it.image is not None],
                  "text": [i for i, it in enumerate(items) if it.image is None]}
        with torch.inference_mode():
            for kind, positions in groups.items():
                for start in range(0, len(positions), batch_size):
                    sel = positions[start : start + batch_size]
                    if kind == "image":
                        inputs = self.processor(images=[load_rgb(items[i].image) for i in sel], return_tensors="pt")
                    else:
                        inputs = self.processor(text=[self._text(items[i]) for i in sel], return_tensors="pt")
                    inputs = {k: v.to(self.device) for k, v in inputs.items()}
                    emb = self.model(**inputs).embeddings.float()
                    mask = inputs["attention_mask"].bool()
                    for r, i in enumerate(sel):
                        out[i] = emb[r][mask[r]].cpu().numpy()
        return out  # type: ignore[return-value]

    @staticmethod
    def _text(item: Item) -> str:
        return with_instruction(item_text(item), item.instruction)

    def input_key(self, item: Item, role: str) -> str:
        """A page image's content digest (the image alone is embedded), else the query text;
        both roles take the same path."""
        check_role(role)
        return image_key(item.image) if item.image is not None else text_key(self._text(item))

    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        raise VembedError(f"{self.name} is a multi-vector (late interaction) model; "
                          "evaluate it with vembed_bench.evaluate (MaxSim search)")

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "path": self.source, "multi_vector": True,
                "dim": self.dim, "dtype": self.dtype, "device": self.device, "normalize": True,
                "versions": library_versions()}
