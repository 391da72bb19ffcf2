"""Hugging Face vision backbones (DINOv2/v3, ViT, MAE, ConvNeXt, ...) as image encoders.

``AutoImageProcessor`` + ``AutoModel``, then one of three poolings:

* ``cls``: the first token of ``last_hidden_state`` (DINOv2/v3 and ViT default);
* ``mean``: the mean of the *patch* tokens only -- the CLS and register tokens
  (``num_register_tokens`` in the config) are left out, as in the DINOv2 paper's
  linear probes; for feature maps (ConvNeXt), the spatial mean;
* ``pooler``: the model's own ``pooler_output`` (the ConvNeXt default).

MAE checkpoints mask 75% of the patches at random in ``forward``; that is
switched off (``mask_ratio = 0``) so embeddings are deterministic and see the
whole image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vembed_bench.encoders import folders
from vembed_bench.encoders.image_base import ImageEncoderBase, to_device
from vembed_bench.encoders.image_io import HFImageTransform, Transform
from vembed_bench.encoders.runtime import load_errors, load_failure, torch_dtype
from vembed_bench.encoders.vision_detect import CONV_TYPES
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

VISION_POOLING = ("cls", "mean", "pooler")


def default_pooling(model_type: str) -> str:
    """``pooler`` for feature-map models, ``mean`` for MAE (no trained CLS), else ``cls``."""
    if model_type in CONV_TYPES:
        return "pooler"
    return "mean" if model_type == "vit_mae" else "cls"


class VisionEncoder(ImageEncoderBase):
    """An image-only backbone; text items are refused with a one-line error."""

    kind = "vision"
    has_text = False

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        super().__init__()
        self._locate_images(source, folder, options)
        cfg = folders.hf_config(self.folder) or {}
        self.model_type = str(cfg.get("model_type", "")).lower()
        self.pooling = options.pooling or default_pooling(self.model_type)
        if self.pooling not in VISION_POOLING:
            raise VembedError(f"unknown pooling {self.pooling!r} for a vision backbone; "
                              f"choose one of {', '.join(VISION_POOLING)}")
        self.n_prefix = 1 + int(cfg.get("num_register_tokens", 0) or 0)
        self._load()

    def _load(self) -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        try:
            config = AutoConfig.from_pretrained(self.source, **kwargs)
            if hasattr(config, "mask_ratio"):
                config.mask_ratio = 0.0
            self.image_processor = AutoImageProcessor.from_pretrained(self.source, **kwargs)
            self.model = AutoModel.from_pretrained(
                self.source, config=config, dtype=torch_dtype(self.dtype), **kwargs)
        except load_errors() as exc:
            raise load_failure(self.source, "a vision model", exc) from None
        self.model.to(self.device).eval()

    def _encode_image_batch(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            inputs = to_device(batch, self.device, torch_dtype(self.dtype))
            output = self.model(**inputs)
            return pool_vision(output, self.pooling, self.n_prefix).float().cpu().numpy()

    def _image_transform(self) -> Transform:
        return HFImageTransform(self.image_processor)

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "pooling": self.pooling}


def pool_vision(output: Any, pooling: str, n_prefix: int = 1) -> Any:
    """Pool a backbone output; ``n_prefix`` = CLS + register tokens before the patches."""
    if pooling == "pooler":
        pooled = getattr(output, "pooler_output", None)
        if pooled is None:
            raise VembedError("this model has no pooler output; use --pooling cls or mean")
        return pooled.flatten(1)
    hidden = output.last_hidden_state
    if hidden.dim() == 4:  # (batch, channels, height, width) feature map
        if pooling == "cls":
            raise VembedError("a convolutional backbone has no CLS token; use --pooling mean or pooler")
        return hidden.mean(dim=(2, 3))
    if pooling == "cls":
        return hidden[:, 0]
    return hidden[:, n_prefix:].mean(dim=1)
