"""Hugging Face CLIP, SigLIP and SigLIP2: the text and image towers of one model.

Texts go through the model's own tokenizer and ``get_text_features``, images
through its own image processor and ``get_image_features``, so both land in
the shared space the model was trained for. SigLIP models were trained on
text padded to the full ``max_length`` (64 tokens) and give different
embeddings with dynamic padding, so they are padded the same way here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vembed_bench.encoders import folders
from vembed_bench.encoders.image_base import ImageEncoderBase, to_device
from vembed_bench.encoders.image_io import HFImageTransform, Transform
from vembed_bench.encoders.runtime import load_errors, load_failure, torch_dtype
from vembed_bench.encoders.text_inputs import resolve_prompts
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions


class CLIPEncoder(ImageEncoderBase):
    """A CLIP-like dual encoder loaded with ``AutoModel``."""

    kind = "clip"

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        super().__init__()
        if options.pooling is not None:
            raise VembedError("--pooling does not apply to CLIP/SigLIP models: each tower has its own head")
        self._locate_images(source, folder, options)
        self.prompts = resolve_prompts(options.query_prompt, options.document_prompt, {})
        cfg = folders.hf_config(self.folder) or {}
        self.model_type = str(cfg.get("model_type", "clip")).lower()
        self._load()
        text_cfg = self.model.config.text_config
        limit = int(getattr(text_cfg, "max_position_embeddings", 77) or 77)
        self.max_length = min(int(options.max_length), limit) if options.max_length else limit
        self.pad_to_max = self.model_type.startswith("siglip")
        self.dim = getattr(self.model.config, "projection_dim", None) or getattr(
            text_cfg, "projection_size", None) or getattr(text_cfg, "hidden_size", None)

    def _load(self) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.source, **kwargs)
            self.image_processor = AutoImageProcessor.from_pretrained(self.source, **kwargs)
            self.model = AutoModel.from_pretrained(self.source, dtype=torch_dtype(self.dtype), **kwargs)
        except load_errors() as exc:
            raise load_failure(self.source, "a CLIP/SigLIP model", exc) from None
        for method in ("get_text_features", "get_image_features"):
            if not hasattr(self.model, method):
                raise VembedError(f"{self.source}: {type(self.model).__name__} has no {method}; "
                                  "it is not a dual-tower image-text model")
        self.model.to(self.device).eval()

    def text_inputs(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised texts as the text tower expects them (on the CPU; training reuses this)."""
        enc = self.tokenizer(
            texts, padding="max_length" if self.pad_to_max else True, truncation=True,
            max_length=self.max_length, return_tensors="pt",
        )
        inputs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        if self.model_type == "siglip":  # SigLIP (v1) was trained without an attention mask
            inputs.pop("attention_mask", None)
        return inputs

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        inputs = to_device(self.text_inputs(texts), self.device)
        with torch.inference_mode():
            return features_tensor(self.model.get_text_features(**inputs)).float().cpu().numpy()

    def _encode_image_batch(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = to_device(batch, self.device, torch_dtype(self.dtype))
            return features_tensor(self.model.get_image_features(**inputs)).float().cpu().numpy()

    def _image_transform(self) -> Transform:
        return HFImageTransform(self.image_processor)

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "max_length": getattr(self, "max_length", None),
                "pad_to_max_length": getattr(self, "pad_to_max", None)}


def features_tensor(output: Any) -> Any:
    """``get_*_features`` returns a tensor (transformers 4) or an output whose
    ``pooler_output`` holds the projected features (transformers 5)."""
    return output if hasattr(output, "float") else output.pooler_output
