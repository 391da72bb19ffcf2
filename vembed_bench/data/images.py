"""Resolution of image paths found in dataset rows.

Image paths are relative to the dataset root. A path that escapes the root
(``../``, absolute paths, symlinks pointing outside) is refused: a dataset
file must never make the tool read arbitrary files on the user's machine.
"""

from __future__ import annotations

from pathlib import Path

from vembed_bench.data.paths import resolve_inside
from vembed_bench.errors import VembedError, where


def resolve_image(root: Path, value: str, path: Path, line_no: int, check_exists: bool = True) -> Path:
    """Return the absolute image path for ``value``, or fail naming file and line."""
    return resolve_image_at(root, value, where(path, line_no), check_exists)


def resolve_image_at(root: Path, value: str, place: str, check_exists: bool = True) -> Path:
    """:func:`resolve_image` for callers that already know how to name the row (``place``)."""
    root = root.resolve()
    candidate = resolve_inside(root, value)
    if candidate is None:
        raise VembedError(
            f"{place}: image path '{value}' is outside the dataset root {root}; "
            "image paths must be relative to the dataset folder"
        )
    if check_exists and not candidate.is_file():
        raise VembedError(f"{place}: image '{value}' not found under {root}")
    return candidate
