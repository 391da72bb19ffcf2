"""open_clip models (OpenAI CLIP, LAION, EVA-CLIP, ...) from a local folder.

The folder is open_clip's own hub layout: ``open_clip_config.json``
(``model_cfg`` and ``preprocess_cfg``) plus ``open_clip_model.safetensors``
(or ``open_clip_pytorch_model.bin``). It is loaded with open_clip's
``local-dir:`` schema, so the model, its evaluation preprocessing and its
tokenizer are exactly open_clip's. Needs the optional ``open_clip_torch``
package (the ``vision`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vembed_bench.encoders.image_base import ImageEncoderBase, to_device
from vembed_bench.encoders.image_io import Transform
from vembed_bench.encoders.runtime import torch_dtype
from vembed_bench.encoders.text_inputs import resolve_prompts
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions


class OpenCLIPEncoder(ImageEncoderBase):
    """Both towers of an open_clip model, L2-normalised."""

    kind = "open_clip"

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        super().__init__()
        try:
            import open_clip
        except ImportError:
            raise VembedError(f"{source} is an open_clip model; install open_clip_torch "
                              "(pip install 'vembed-bench[vision]')") from None
        self._locate_images(source, folder, options)
        self.prompts = resolve_prompts(options.query_prompt, options.document_prompt, {})
        spec = f"local-dir:{self.folder.resolve()}"
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(spec, device=self.device)
            self.tokenizer = open_clip.get_tokenizer(spec)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VembedError(f"cannot load {self.folder} as an open_clip model: {first}") from None
        self.model.to(dtype=torch_dtype(self.dtype)).eval()
        self.dim = getattr(getattr(self.model, "text_projection", None), "shape", [None, None])[-1]

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tokens = self.tokenizer(texts).to(self.device)
            return self.model.encode_text(tokens).float().cpu().numpy()

    def _encode_image_batch(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model.encode_image(to_device(batch, self.device, torch_dtype(self.dtype))).float().cpu().numpy()

    def _image_transform(self) -> Transform:
        return self.preprocess
