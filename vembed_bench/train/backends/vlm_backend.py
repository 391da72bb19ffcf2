"""``model.type: vlm``: fine-tune a Qwen-VL-style embedder (VLM2Vec / Qwen3-VL-Embedding layout).

Built from :class:`~vembed_bench.encoders.vlm_encoder.VLMEncoder`, so training
and evaluation share the prompt layout (image placeholder, then text), the
processor and the last-token pooling. An input may be a text, an image, or an
image with text (``query_image`` plus ``query``): each becomes one item.

Instructions: evaluation puts the instruction before a query's text as
``"{instruction} {text}"``. In training the data reader applies
``data.query_prompt`` to query texts, so write the instruction there with a
trailing space (``"Represent the given image for classification: "``); the
evaluations of the base and the fine-tuned model then use the same
instruction (``eval_options``). Parameter names start with ``model.``; LoRA
wraps the VLM with peft (``lora.target_modules`` e.g. ``[q_proj, v_proj]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vembed_bench.errors import VembedError

__all__ = ["VLMTrainable", "build", "eval_options"]


class VLMTrainable(nn.Module):
    """A VLM embedder with the training protocol of :mod:`vembed_bench.train.model`."""

    accepts = frozenset({"text", "image"})

    def __init__(self, encoder: Any) -> None:
        super().__init__()
        self.model = encoder.model
        self.processor = encoder.processor
        self._batch_inputs = encoder.batch_inputs

    def tokenize(self, inputs: Sequence[Any]) -> dict[str, Any]:
        from vembed_bench.data.types import Item
        from vembed_bench.train.data import ImageInput

        items = [Item(str(i), image=Path(x.path), text=x.text) if isinstance(x, ImageInput)
                 else Item(str(i), text=x) for i, x in enumerate(inputs)]
        return self._batch_inputs(items)

    def forward(self, features: dict[str, Any]) -> dict[str, torch.Tensor]:
        from vembed_bench.encoders.vlm_encoder import embed_batch

        return {"sentence_embedding": embed_batch(self.model, features)}

    def save_trained(self, folder: Path, prompts: dict[str, str] | None = None) -> Path:
        from vembed_bench.train.model import merged_copy

        folder = Path(folder)
        merged_copy(self.model, folder.parent / f"{folder.name}-adapter").save_pretrained(str(folder))
        self.processor.save_pretrained(str(folder))
        return folder


def build(recipe: Any, device: str = "cpu") -> nn.Module:
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions
    from vembed_bench.train.model import resolve_model_path, with_lora

    options = EncoderOptions.build(eval_options(recipe, tuned=False), device=device, dtype="float32",
                                   show_progress=False, max_length=recipe.model.max_length)
    encoder = load_encoder(resolve_model_path(recipe), options)
    model = VLMTrainable(encoder)
    if recipe.model.gradient_checkpointing:
        model.model.gradient_checkpointing_enable()
    if recipe.lora.load_in_4bit:
        raise VembedError("lora.load_in_4bit (QLoRA) applies to model.type llm, not vlm")
    if recipe.lora.enabled:
        model.model = with_lora(model.model, recipe.lora)
    return model.to(device)


def eval_options(recipe: Any, *, tuned: bool) -> dict[str, Any]:
    """The query instruction of training (``data.query_prompt``) for both evaluations."""
    if recipe.data.document_prompt:
        raise VembedError("data.document_prompt: a VLM embeds documents without a prompt; "
                          "leave it empty")
    options: dict[str, Any] = {"model_type": "vlm", "instruction": recipe.data.query_prompt.strip()}
    if recipe.model.processor:
        options["processor"] = str(recipe.resolve_path(recipe.model.processor, "model.processor"))
    if not tuned:
        options["trust_remote_code"] = recipe.model.trust_remote_code
    return options
