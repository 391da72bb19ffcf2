"""Reading images for encoders: PIL, EXIF orientation, RGB, on DataLoader workers.

Decoding JPEGs and running an image processor costs more CPU than a small
vision tower's forward pass, so they run on ``torch.utils.data.DataLoader``
workers while the main process runs the model (see
``benchmarks/bench_image_encode.py``). Phone photos store their rotation as an
EXIF tag; without :func:`PIL.ImageOps.exif_transpose` they are fed sideways.
Palette, greyscale, CMYK and RGBA images are converted to RGB.

A missing or corrupt image stops the run with its path, item id and row;
with ``skip_bad_images`` it is counted instead and gets a zero vector (which
no search ranks above a real match), and the count goes into the result file.
Workers never raise: they return the error text, so the message the user sees
is ours, not a worker traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

Transform = Callable[[Any], Any]
"""PIL RGB image -> a tensor, or a dict of tensors, for one image (no batch axis)."""


def open_image(path: str | Path):
    """Open ``path`` as an upright RGB PIL image (decoded now, file closed)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image)
            image = image.convert("RGB")
        else:
            image.load()
        return image


def default_workers() -> int:
    """Workers for image decoding: half the cores, at most 8 (0 on a single core)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, cores // 2) if cores > 1 else 0


@dataclass
class ImageStats:
    """What happened to the images of one run; goes into the result file."""

    loaded: int = 0
    skipped_paths: set[str] = field(default_factory=set)
    skipped_examples: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Distinct images skipped (an image met as query and as document counts once)."""
        return len(self.skipped_paths)

    def to_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "skipped": self.skipped,
                "skipped_examples": list(self.skipped_examples)}


class _ImageDataset:
    """Map-style dataset: index -> (index, tensor or None, error or None)."""

    def __init__(self, paths: Sequence[Path], transform: Transform) -> None:
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return index, self.transform(open_image(self.paths[index])), None
        except Exception as exc:  # noqa: BLE001 - reported by the main process
            return index, None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _collate(rows):
    return rows


def image_batches(
    items: Sequence[Item],
    transform: Transform,
    *,
    batch_size: int,
    num_workers: int | None = None,
    skip_bad_images: bool = False,
    stats: ImageStats | None = None,
) -> Iterator[tuple[list[int], Any]]:
    """Yield ``(positions, batch)`` (a stacked tensor, or a dict of them) for the items' images, in input order.

    Positions index ``items``; images that fail are skipped (and counted in
    ``stats``) when ``skip_bad_images``, else raise a one-line error.
    """
    from torch.utils.data import DataLoader

    paths = []
    for row, item in enumerate(items):
        if item.image is None:
            raise VembedError(f"item {item.id!r} (row {row}) has no image")
        paths.append(item.image)
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(
        _ImageDataset(paths, transform), batch_size=batch_size, shuffle=False,
        num_workers=workers, collate_fn=_collate, persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    stats = stats if stats is not None else ImageStats()
    for rows in loader:
        positions, tensors = [], []
        for index, tensor, error in rows:
            if error is not None:
                item = items[index]
                message = (f"cannot read image {item.image} (item {item.id!r}, row {index}): {error}")
                if not skip_bad_images:
                    raise VembedError(message + "; fix or remove it, or pass skip_bad_images "
                                      "(--skip-bad-images) to skip and count such images")
                if str(item.image) in stats.skipped_paths:
                    continue
                stats.skipped_paths.add(str(item.image))
                if len(stats.skipped_examples) < 10:
                    stats.skipped_examples.append(message)
                continue
            positions.append(index)
            tensors.append(tensor)
        stats.loaded += len(positions)
        if positions:
            yield positions, stack_batch(tensors)


def stack_batch(tensors: list[Any]) -> Any:
    """Stack per-image tensors (or dicts of them, e.g. SigLIP2's pixel mask) into a batch."""
    import torch

    if isinstance(tensors[0], dict):
        return {key: torch.stack([t[key] for t in tensors]) for key in tensors[0]}
    return torch.stack(tensors)


class HFImageTransform:
    """A Hugging Face image processor applied to one image (picklable for workers)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: Any) -> dict[str, Any]:
        batch = self.processor(images=image, return_tensors="pt")
        return {key: value[0] for key, value in batch.items()}
