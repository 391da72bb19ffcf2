"""What every image-capable encoder shares: routing items to towers, images on workers.

An item with an image goes to the image tower, an item with only text to the
text tower (when the model has one), and the rows are put back in input
order. Items with both an image and text are refused rather than silently
dropping one of them: fusing the two is a different kind of model (VLM).
Subclasses implement ``_encode_text_batch`` / ``_encode_image_batch`` and
say which image transform to run on the loader workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.base import EncoderBase
from vembed_bench.encoders.image_io import ImageStats, Transform, image_batches
from vembed_bench.encoders.input_keys import check_role, image_key, text_key
from vembed_bench.encoders.runtime import library_versions, progress_bar, role_label
from vembed_bench.encoders.text_base import check_batch_size
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, format_item
from vembed_bench.errors import VembedError


class ImageEncoderBase(EncoderBase):
    """Base class; subclasses set ``kind``, ``name``, ``folder``, ``device``, ``dtype``."""

    kind: str = "image"
    prompts: Mapping[str, str | None] = {QUERY: None, DOCUMENT: None}
    show_progress: bool = True
    num_workers: int | None = None
    skip_bad_images: bool = False
    dim: int | None = None
    has_text: bool = True
    has_image: bool = True

    def __init__(self) -> None:
        self.image_stats = ImageStats()
        # Image vectors of the previous call, by path: in image-to-image tasks the queries
        # are the corpus images, and an image's vector does not depend on its role.
        self._image_memo: dict[Path, np.ndarray] = {}

    def _locate_images(self, source: str | Path, folder: Path | None, options: Any) -> None:
        """Source, folder (``source`` itself unless given), name, device, dtype and image loading options."""
        self._locate(source, folder, options, need_folder=True)
        self._place(options)
        self.num_workers = options.num_workers
        self.skip_bad_images = options.skip_bad_images

    # -- the Encoder protocol ----------------------------------------------------------------
    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        """Rows of unit norm; images through the image tower, texts through the text tower."""
        return self._encode(items, QUERY, batch_size)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._encode(items, DOCUMENT, batch_size)

    def input_key(self, item: Item, role: str) -> str:
        """``"image:" + sha256`` of an image item's file (its vector does not depend on the role);
        a text item's exact string under the role's prompt."""
        check_role(role)
        if item.image is not None:
            key = image_key(item.image)
            return key if not (item.text or item.title) else key + "|" + text_key(format_item(item, ""))
        return text_key(format_item(item, self.prompts.get(role)))

    def encode_stats(self) -> dict[str, Any]:
        """Counts of loaded and skipped images, for the result file."""
        return {"images": self.image_stats.to_dict()}

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind, "name": self.name,
            "folder": str(self.folder) if self.folder is not None else None,
            "prompts": dict(self.prompts), "dtype": self.dtype, "device": self.device,
            "dim": self.dim, "normalize": True, "skip_bad_images": self.skip_bad_images,
            **self._settings(), "versions": library_versions(("torch", "transformers", "timm",
                                                              "open_clip_torch", "pillow", "numpy")),
        }

    # -- routing -----------------------------------------------------------------------------
    def _encode(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        check_batch_size(batch_size)
        image_rows, text_rows = [], []
        for row, item in enumerate(items):
            has_text = bool(item.text or item.title)
            if item.image is not None and has_text:
                raise VembedError(
                    f"item {item.id!r} has both an image and text, but {self.name} ({self.kind}) "
                    "encodes one or the other; use a multimodal (VLM) encoder for such items"
                )
            (image_rows if item.image is not None else text_rows).append(row)
        if text_rows and not self.has_text:
            item = items[text_rows[0]]
            raise VembedError(f"item {item.id!r} is text, but {self.name} ({self.kind}) is an "
                              "image-only model; use an image-text model for this task")
        if image_rows and not self.has_image:
            item = items[image_rows[0]]
            raise VembedError(f"item {item.id!r} has an image, but {self.name} ({self.kind}) "
                              "has no image tower")
        out: np.ndarray | None = None

        def put(rows: Sequence[int], vectors: np.ndarray) -> None:
            nonlocal out
            if out is None:
                self.dim = int(vectors.shape[1])
                out = np.zeros((len(items), self.dim), dtype=np.float32)
            out[list(rows)] = vectors

        with progress_bar(len(items), role_label(role, items), self.show_progress) as bar:
            if text_rows:
                texts = [format_item(items[r], self.prompts.get(role)) for r in text_rows]
                for start in range(0, len(texts), batch_size):
                    put(text_rows[start:start + batch_size],
                        self._encode_text_batch(texts[start:start + batch_size]))
                    bar.update(min(batch_size, len(texts) - start))
            memo, self._image_memo = getattr(self, "_image_memo", {}), {}
            reused = [r for r in image_rows if items[r].image in memo]
            if reused:
                put(reused, np.stack([memo[items[r].image] for r in reused]))
                self._image_memo.update((items[r].image, memo[items[r].image]) for r in reused)
                bar.update(len(reused))
                image_rows = [r for r in image_rows if items[r].image not in memo]
            if image_rows:
                image_items = [items[r] for r in image_rows]
                batches = image_batches(
                    image_items, self._image_transform(), batch_size=batch_size,
                    num_workers=self.num_workers, skip_bad_images=self.skip_bad_images,
                    stats=self.image_stats,
                )
                for positions, batch in batches:
                    vectors = self._encode_image_batch(batch)
                    put([image_rows[p] for p in positions], vectors)
                    self._image_memo.update(zip((image_items[p].image for p in positions), vectors))
                    bar.update(len(positions))
        if out is None:  # every image skipped
            out = np.zeros((len(items), self.dim or 1), dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    # -- for subclasses ----------------------------------------------------------------------
    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _encode_image_batch(self, batch: Any) -> np.ndarray:
        raise NotImplementedError

    def _image_transform(self) -> Transform:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {"prompts": dict(self.prompts), "normalize": True, "dtype": self.dtype}


def to_device(batch: Any, device: str, dtype: Any = None) -> Any:
    """Move a tensor or a dict of tensors; floating tensors also take ``dtype``."""
    if isinstance(batch, dict):
        return {key: to_device(value, device, dtype) for key, value in batch.items()}
    if dtype is not None and batch.is_floating_point():
        return batch.to(device=device, dtype=dtype)
    return batch.to(device)
