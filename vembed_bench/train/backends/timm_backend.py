"""``model.type: timm``: fine-tune a timm image backbone from a folder in timm's hub layout.

Training must embed images exactly as ``vembed-bench eval`` does, or the
fine-tuned score measures a mismatch rather than the training. So the module
reuses the eval encoder's pieces: :func:`~vembed_bench.encoders.timm_encoder.load_timm_model`
(same classifier-free model and pooling), :func:`~vembed_bench.encoders.timm_encoder.eval_transform`
(the folder's ``pretrained_cfg`` preprocessing), :func:`~vembed_bench.encoders.image_io.open_image`
(EXIF, RGB) and L2-normalised outputs like
:class:`~vembed_bench.encoders.image_base.ImageEncoderBase`.
The saved folder is again a timm folder carrying the base folder's ``pretrained_cfg``,
so ``vembed-bench eval --model`` loads it with the same preprocessing.

BatchNorm layers whose parameters are all frozen (``model.freeze``) stay in eval
mode while training: "frozen" then includes their running statistics, and the
frozen part of the network computes what the base model computes. Parameter
names start with ``model.`` (e.g. ``model.blocks.0`` for ``model.freeze``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vembed_bench.errors import VembedError

__all__ = ["TimmTrainable", "build", "eval_options"]


class TimmTrainable(nn.Module):
    """A timm backbone with the training protocol of :mod:`vembed_bench.train.model`."""

    accepts = frozenset({"image"})

    def __init__(self, folder: Path, *, pooling: str | None = None, device: str = "cpu") -> None:
        super().__init__()
        from vembed_bench.encoders.timm_encoder import (
            eval_transform,
            load_timm_model,
            read_timm_config,
        )

        self.folder = Path(folder)
        self.architecture, self.pretrained_cfg = read_timm_config(self.folder)
        self.pooling = pooling or "avg"
        self.model = load_timm_model(self.folder, self.architecture, self.pooling)
        self.transform = eval_transform(self.pretrained_cfg, self.model)
        # Channels-last convolutions are about twice as fast on CPU (as in TimmEncoder).
        self.channels_last = str(device) == "cpu"
        self.to(device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def tokenize(self, inputs: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Images -> ``{"pixel_values": (n, 3, H, W)}`` with the eval preprocessing."""
        from vembed_bench.train.backends.inputs import load_images, split_inputs

        split = split_inputs(inputs, "a timm model", allow_text=False)
        return {"pixel_values": load_images(split.images, self.transform)}

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pixels = features["pixel_values"]
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        pooled = self.model(pixels)
        embedding = nn.functional.normalize(pooled.float(), p=2, dim=-1, eps=1e-12)
        return {"sentence_embedding": embedding}

    def train(self, mode: bool = True) -> TimmTrainable:
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in module.parameters()
                ):
                    module.eval()
        return self

    def save_trained(self, folder: Path, prompts: dict[str, str] | None = None) -> Path:
        """Write a timm folder (LoRA merged) that loads as ``--model-type timm``.

        ``prompts`` do not apply to an image-only model and are ignored.
        """
        import shutil

        from vembed_bench.encoders.timm_encoder import save_timm_folder
        from vembed_bench.train.model import merged_copy

        model = merged_copy(self.model).to(memory_format=torch.contiguous_format)
        model.pretrained_cfg = dict(self.pretrained_cfg)  # keep the base folder's preprocessing
        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        save_timm_folder(model, tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)  # a reader sees no folder or a complete one
        return folder


def build(recipe: Any, device: str = "cpu") -> TimmTrainable:
    """The recipe's timm folder as a trainable module (LoRA and gradient checkpointing applied)."""
    from vembed_bench.encoders.vision_detect import is_timm_folder
    from vembed_bench.train.model import resolve_model_path

    folder = Path(resolve_model_path(recipe))
    if not folder.is_dir() or not is_timm_folder(folder):
        raise VembedError(
            f"model.path {recipe.model.path}: not a timm folder (config.json with 'architecture' "
            "and model.safetensors); timm training needs a local folder"
        )
    module = TimmTrainable(folder, pooling=recipe.model.pooling, device=device)
    if recipe.model.gradient_checkpointing:
        if not hasattr(module.model, "set_grad_checkpointing"):
            raise VembedError(
                f"model.gradient_checkpointing: timm's {module.architecture} does not support it"
            )
        module.model.set_grad_checkpointing(True)
    if recipe.lora.enabled:
        _add_lora(module, recipe.lora)
    return module


def _add_lora(module: TimmTrainable, cfg: Any) -> None:
    if not cfg.target_modules:
        raise VembedError(
            "lora.target_modules is required for a timm model (peft has no default for it); "
            "name its Linear/Conv2d layers, e.g. [conv_pwl, conv_pw] for EfficientNets"
        )
    if cfg.load_in_4bit:
        raise VembedError("lora.load_in_4bit (QLoRA) is not supported for timm models")
    from vembed_bench.train.model import with_lora

    module.model = with_lora(module.model, cfg)


def eval_options(recipe: Any, tuned: bool) -> dict[str, Any]:
    """Both the base and the saved folder load as timm with the recipe's pooling."""
    options: dict[str, Any] = {"model_type": "timm"}
    if recipe.model.pooling:
        options["pooling"] = recipe.model.pooling
    return options
