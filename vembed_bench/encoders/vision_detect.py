"""Which model folders hold image-text (CLIP-like) or vision-backbone models.

Only ``config.json`` is read (no torch), like the text detectors in
:mod:`vembed_bench.encoders.folders`, so detection stays instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vembed_bench.encoders import folders

# Dual-tower models with get_text_features / get_image_features and a plain tokenizer.
CLIP_TYPES = frozenset({"clip", "siglip", "siglip2"})

# Vision backbones loadable by AutoModel + AutoImageProcessor.
VISION_TYPES = frozenset({
    "vit", "vit_mae", "vit_msn", "deit", "beit", "data2vec-vision", "dinov2",
    "dinov2_with_registers", "dinov3_vit", "dinov3_convnext", "convnext", "convnextv2",
    "swin", "swinv2", "resnet", "regnet", "efficientnet", "mobilenet_v2", "levit",
    "pvt", "pvt_v2", "hiera", "ijepa", "clip_vision_model", "siglip_vision_model",
    "focalnet", "bit", "dinat", "nat", "poolformer", "segformer",
})

# Backbones whose output is a feature map (no CLS token): pooled by the model itself.
CONV_TYPES = frozenset({
    "convnext", "convnextv2", "dinov3_convnext", "resnet", "regnet", "efficientnet",
    "mobilenet_v2", "bit", "focalnet", "poolformer",
})


def _config(folder: Path) -> dict[str, Any] | None:
    return folders.hf_config(folder)


def is_clip_folder(folder: Path) -> bool:
    """``config.json`` of a CLIP / SigLIP / SigLIP2 dual-tower model."""
    cfg = _config(folder)
    return cfg is not None and str(cfg.get("model_type", "")).lower() in CLIP_TYPES


def is_vision_folder(folder: Path) -> bool:
    """``config.json`` of an image-only backbone (ViT, DINOv2/v3, MAE, ConvNeXt, ...)."""
    cfg = _config(folder)
    if cfg is None:
        return False
    model_type = str(cfg.get("model_type", "")).lower()
    if model_type in VISION_TYPES:
        return True
    if "text_config" in cfg or "vocab_size" in cfg or model_type in CLIP_TYPES:
        return False
    archs = [str(a) for a in cfg.get("architectures") or []]
    looks_visual = "num_channels" in cfg and ("image_size" in cfg or "patch_size" in cfg)
    return looks_visual and bool(archs) and all(a.endswith("Model") for a in archs)


def is_timm_folder(folder: Path) -> bool:
    """timm's hub layout: ``config.json`` with ``architecture`` (singular), no ``model_type``."""
    cfg = _config(folder)
    return cfg is not None and "architecture" in cfg and "model_type" not in cfg


def is_composed_folder(folder: Path) -> bool:
    """A composed text+image encoder folder (``composed.json``)."""
    return (folder / "composed.json").is_file()


def is_adapter_folder(folder: Path) -> bool:
    """A PEFT adapter folder (``adapter_config.json`` without a full model's ``config.json``)."""
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def is_open_clip_folder(folder: Path) -> bool:
    """open_clip's hub layout (``open_clip_config.json``)."""
    return (folder / "open_clip_config.json").is_file()
