"""``model.type: vision`` and ``clip``: fine-tune Hugging Face image backbones and dual encoders.

Each trainable model is built *from the eval encoder* (:class:`~vembed_bench.encoders.vision_encoder.VisionEncoder`,
:class:`~vembed_bench.encoders.clip_encoder.CLIPEncoder`): the same loaded
``AutoModel``, image processor, tokenizer settings (SigLIP's padding to the full
length) and pooling. So training embeds exactly what ``vembed-bench eval``
embeds, and the saved folder (``save_pretrained`` of the merged model plus its
processor and tokenizer) loads back into the same encoder.

* ``vision`` (DINOv2/v3, ViT, ConvNeXt, ...): images only; ``model.pooling`` is
  ``cls``, ``mean`` (patch tokens, registers left out) or ``pooler``.
* ``clip`` (CLIP, SigLIP, SigLIP2): texts through ``get_text_features``, images
  through ``get_image_features``; one batch may mix both (queries and positives).

Parameter names start with ``model.`` (e.g. ``model.text_model`` to freeze
CLIP's text tower with ``model.freeze``). LoRA wraps the HF model with peft.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vembed_bench.errors import VembedError
from vembed_bench.train.backends.inputs import load_images, split_inputs

__all__ = ["CLIPTrainable", "VisionTrainable", "build", "eval_options"]


class _HFTrainable(nn.Module):
    """What both share: the wrapped HF model, LoRA, and saving a loadable folder."""

    kind = ""

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.model = encoder.model
        self.image_processor = encoder.image_processor
        self.transform = encoder._image_transform()
        self.name = encoder.name

    def add_lora(self, cfg: Any) -> None:
        from vembed_bench.train.model import with_lora

        if cfg.load_in_4bit:
            raise VembedError(f"lora.load_in_4bit (QLoRA) applies to model.type llm, not {self.kind}")
        self.model = with_lora(self.model, cfg)

    def _image_embeddings(self, images: Sequence[Any]) -> Any:
        raise NotImplementedError

    def save_trained(self, folder: Path, prompts: dict[str, str] | None = None) -> Path:
        """The merged model, its processor (and tokenizer), in the HF layout the encoder loads."""
        from vembed_bench.train.model import merged_copy

        folder = Path(folder)
        merged_copy(self.model, folder.parent / f"{folder.name}-adapter").save_pretrained(str(folder))
        self.image_processor.save_pretrained(str(folder))
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))
        return folder


class VisionTrainable(_HFTrainable):
    """An image backbone with the eval encoder's pooling, L2-normalised."""

    kind = "vision"
    accepts = frozenset({"image"})

    def __init__(self, encoder: Any) -> None:
        super().__init__(encoder)
        self.pooling, self.n_prefix = encoder.pooling, encoder.n_prefix

    def tokenize(self, inputs: Sequence[Any]) -> dict[str, Any]:
        split = split_inputs(inputs, f"{self.name} (vision)", allow_text=False)
        return {"pixels": load_images(split.images, self.transform)}

    def forward(self, features: dict[str, Any]) -> dict[str, torch.Tensor]:
        from vembed_bench.encoders.vision_encoder import pool_vision

        pixels = features["pixels"]
        output = self.model(**pixels) if isinstance(pixels, dict) else self.model(pixel_values=pixels)
        pooled = pool_vision(output, self.pooling, self.n_prefix).float()
        return {"sentence_embedding": nn.functional.normalize(pooled, p=2, dim=-1)}


class CLIPTrainable(_HFTrainable):
    """A dual encoder: each input through its own tower, rows kept in input order."""

    kind = "clip"
    accepts = frozenset({"text", "image"})

    def __init__(self, encoder: Any) -> None:
        super().__init__(encoder)
        self.tokenizer = encoder.tokenizer
        self._text_inputs = encoder.text_inputs

    def tokenize(self, inputs: Sequence[Any]) -> dict[str, Any]:
        split = split_inputs(inputs, f"{self.name} (clip)")
        features: dict[str, Any] = {
            "rows": (torch.tensor(split.text_rows, dtype=torch.long),
                     torch.tensor(split.image_rows, dtype=torch.long)),
        }
        if split.texts:
            features["text"] = self._text_inputs(split.texts)
        if split.images:
            features["pixels"] = load_images(split.images, self.transform)
        return features

    def forward(self, features: dict[str, Any]) -> dict[str, torch.Tensor]:
        from vembed_bench.encoders.clip_encoder import features_tensor

        text_rows, image_rows = features["rows"]
        parts = []
        if "text" in features:
            parts.append((text_rows, features_tensor(self.model.get_text_features(**features["text"]))))
        if "pixels" in features:
            pixels = features["pixels"]
            pixels = pixels if isinstance(pixels, dict) else {"pixel_values": pixels}
            parts.append((image_rows, features_tensor(self.model.get_image_features(**pixels))))
        first = parts[0][1]
        out = first.new_zeros(len(text_rows) + len(image_rows), first.shape[1], dtype=torch.float32)
        for rows, vectors in parts:
            out = out.index_copy(0, rows.to(out.device), vectors.float())
        return {"sentence_embedding": nn.functional.normalize(out, p=2, dim=-1)}


def build(recipe: Any, device: str = "cpu") -> nn.Module:
    """The recipe's vision / clip model, with LoRA and gradient checkpointing when asked."""
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions
    from vembed_bench.train.model import model_kind, resolve_model_path

    kind = model_kind(recipe)
    options = EncoderOptions.build(_encoder_options(recipe, kind), model_type=kind, device=device,
                                   dtype="float32", show_progress=False)
    encoder = load_encoder(resolve_model_path(recipe), options)
    model = VisionTrainable(encoder) if kind == "vision" else CLIPTrainable(encoder)
    if recipe.model.gradient_checkpointing:
        if not getattr(model.model, "supports_gradient_checkpointing", False):
            raise VembedError(f"model.gradient_checkpointing: {encoder.name} does not support it")
        model.model.gradient_checkpointing_enable()
    if recipe.lora.enabled:
        model.add_lora(recipe.lora)
    return model.to(device)


def _encoder_options(recipe: Any, kind: str) -> dict[str, Any]:
    options: dict[str, Any] = {"trust_remote_code": recipe.model.trust_remote_code}
    if kind == "vision" and recipe.model.pooling:
        options["pooling"] = recipe.model.pooling
    if kind == "clip":
        options["max_length"] = recipe.model.max_length
    return options


def eval_options(recipe: Any, *, tuned: bool) -> dict[str, Any]:
    """The same pooling, text length and prompts for the base model and the saved folder."""
    from vembed_bench.train.model import model_kind

    kind = model_kind(recipe)
    options = {"model_type": kind, **_encoder_options(recipe, kind)}
    if tuned:
        options.pop("trust_remote_code")
    if kind == "clip":
        options.update(query_prompt=recipe.data.query_prompt, document_prompt=recipe.data.document_prompt)
    return options
