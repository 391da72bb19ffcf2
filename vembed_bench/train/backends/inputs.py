"""Turning a list of training inputs (texts and images) into model features.

The loop hands a backend one list holding the batch's queries, positives and
negatives, so an image-text model gets texts and images mixed. These helpers
split such a list by kind (keeping the rows, to put the embeddings back in
order) and load images with the same reader and preprocessing as evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["SplitInputs", "load_images", "split_inputs"]


@dataclass
class SplitInputs:
    """The rows and values of the texts and of the images of one input list."""

    text_rows: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    image_rows: list[int] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)  # ImageInput


def split_inputs(inputs: Sequence[Any], model: str, *, allow_text: bool = True,
                 allow_images: bool = True) -> SplitInputs:
    """Split ``inputs`` by kind; refuse what ``model`` (its name, for the message) cannot embed.

    An image with text (a mixed input) is refused too: only a VLM fuses the two.
    """
    from vembed_bench.train.data import ImageInput

    out = SplitInputs()
    for row, item in enumerate(inputs):
        if isinstance(item, ImageInput):
            if item.text or not allow_images:
                what = f"image {item.path} with text {item.text!r}" if item.text else f"image {item.path}"
                raise VembedError(f"{model} cannot embed {what[:120]}; "
                                  "use a VLM for image+text inputs or drop the text column")
            out.image_rows.append(row)
            out.images.append(item)
        else:
            if not allow_text:
                raise VembedError(f"{model} embeds images only, got the text {str(item)[:60]!r}; "
                                  "use an image-text model (clip, composed) for text")
            out.text_rows.append(row)
            out.texts.append(item)
    return out


def load_images(images: Sequence[Any], transform: Callable[[Any], Any]) -> Any:
    """Open (EXIF, RGB) and preprocess ``images`` into one batch: a tensor or a dict of them."""
    from vembed_bench.encoders.image_io import open_image, stack_batch

    tensors = []
    for image in images:
        try:
            tensors.append(transform(open_image(image.path)))
        except OSError as err:
            raise VembedError(f"cannot read training image {image.path}: {err}") from None
    return stack_batch(tensors)
