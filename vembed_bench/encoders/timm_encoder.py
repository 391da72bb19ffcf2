"""timm backbones as image encoders, from a folder in timm's own hub layout.

A timm folder is ``config.json`` (``architecture``, ``pretrained_cfg``, ...) plus
``model.safetensors`` -- what ``timm`` pushes to and reads from the Hugging Face
hub. The model is built with ``num_classes=0``, so its output is the pooled
pre-logits feature (1280-d for EfficientNet-Lite0), and images get the
preprocessing of its ``pretrained_cfg`` (size, crop, interpolation, mean/std).
On CPU the convolutions run channels-last, about twice as fast for
EfficientNets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vembed_bench.encoders.image_base import ImageEncoderBase, to_device
from vembed_bench.encoders.image_io import Transform
from vembed_bench.encoders.runtime import torch_dtype
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class TimmEncoder(ImageEncoderBase):
    """A timm model's pooled features; text items are refused."""

    kind = "timm"
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
        self.pooling = options.pooling or "avg"
        self.architecture, self.pretrained_cfg = read_timm_config(self.folder)
        self.model = load_timm_model(self.folder, self.architecture, self.pooling)
        self.model.to(device=self.device, dtype=torch_dtype(self.dtype)).eval()
        self.channels_last = self.device == "cpu"
        if self.channels_last:
            import torch

            self.model = self.model.to(memory_format=torch.channels_last)
        self.dim = int(getattr(self.model, "num_features", 0) or 0) or None

    def _image_transform(self) -> Transform:
        return eval_transform(self.pretrained_cfg, self.model)

    def _encode_image_batch(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = to_device(batch, self.device, torch_dtype(self.dtype))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()

    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "architecture": getattr(self, "architecture", None),
                "pooling": getattr(self, "pooling", None)}


def eval_transform(pretrained_cfg: dict[str, Any], model: Any) -> Transform:
    """The eval preprocessing of ``pretrained_cfg`` (size, crop, interpolation, mean/std).

    Shared by :class:`TimmEncoder` and the timm training backend, so a fine-tuned
    model sees exactly the pixels it is later evaluated on.
    """
    import timm.data

    config = timm.data.resolve_data_config({}, pretrained_cfg=pretrained_cfg, model=model)
    return timm.data.create_transform(**config)


def read_timm_config(folder: Path) -> tuple[str, dict[str, Any]]:
    """``(architecture, pretrained_cfg)`` from a timm folder's ``config.json``."""
    cfg = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    return str(cfg["architecture"]), dict(cfg.get("pretrained_cfg") or {})


def load_timm_model(folder: Path, architecture: str, pooling: str = "avg"):
    """Build ``architecture`` without a classifier and load the folder's weights."""
    import timm

    from vembed_bench.torch_files import load_weights_only

    try:
        model = timm.create_model(architecture, pretrained=False, num_classes=0, global_pool=pooling)
    except RuntimeError as exc:  # unknown model name
        raise VembedError(f"{folder}/config.json: timm cannot build '{architecture}' ({exc})") from None
    state = None
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = load_weights_only(path, map_location="cpu")
            break
    if state is None:
        raise VembedError(f"{folder}: no {' or '.join(WEIGHT_FILES)} next to config.json")
    missing, unexpected = model.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("classifier.", "head.", "fc."))]
    if missing or unexpected:
        raise VembedError(f"{folder}: weights do not fit {architecture} (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]})")
    return model


def save_timm_folder(model: Any, folder: str | Path) -> Path:
    """Write ``model`` in timm's hub layout (config.json + model.safetensors), each file atomically."""
    from safetensors.torch import save

    from vembed_bench.atomic import atomic_open

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(model.pretrained_cfg)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
    config = {"architecture": cfg.get("architecture"), "num_classes": getattr(model, "num_classes", 0),
              "num_features": getattr(model, "num_features", None), "pretrained_cfg": cfg}
    with atomic_open(folder / "config.json") as handle:
        handle.write(json.dumps(config, indent=2) + "\n")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_open(folder / "model.safetensors", "wb") as handle:
        handle.write(save(state))
    return folder
