"""Where a recipe's paths point, and the roots they may not leave.

A recipe path is absolute (used as written: the user chose it), ``@data_root/...``
(under ``--data-root`` / ``$VEMBED_DATA_ROOT``) or relative to the recipe's folder.
An ``@data_root/`` path must resolve inside the data root, symlinks included:
``@data_root/../x.jsonl`` or a link in the data root pointing elsewhere would
otherwise read files the user never pointed at. ``data.image_root`` guards the
image paths of every data row, so a root that climbs out of where it was given
(``@data_root/../../..``, a relative ``../..`` above the recipe folder) would let
a row read any file on the machine; such a root is refused too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["DATA_ROOT_PREFIX", "PATH_KEYS", "check_paths", "resolve_image_root", "resolve_path"]

DATA_ROOT_PREFIX = "@data_root/"
PATH_KEYS = (
    "model.path",
    "model.text_tower",
    "model.image_tower",
    "model.processor",
    "data.train",
    "data.image_root",
)
"""The recipe keys that name files or folders (``@data_root/`` applies to each)."""


def resolve_path(recipe: Any, value: str, key: str = "path") -> Path:
    """``value`` of the recipe key ``key`` as a path (see the module docstring)."""
    if value.startswith(DATA_ROOT_PREFIX):
        root = _data_root(recipe, key, value)
        path = root / value.removeprefix(DATA_ROOT_PREFIX)
        _confine(recipe, key, value, path, root)
        return path
    path = Path(value).expanduser()
    return path if path.is_absolute() else Path(recipe.base_dir) / path


def resolve_image_root(recipe: Any) -> Path | None:
    """``data.image_root`` as a folder, or ``None`` (then images are relative to the data file).

    Given via ``@data_root/`` it stays inside the data root; given relatively it may
    lie beside the recipe folder (``../images``) but not above it.
    """
    value = recipe.data.image_root
    if not value:
        return None
    path = resolve_path(recipe, value, "data.image_root")
    if value.startswith(DATA_ROOT_PREFIX) or Path(value).expanduser().is_absolute():
        return path
    base = Path(recipe.base_dir).resolve()
    resolved = path.resolve()
    if resolved != base and base.is_relative_to(resolved):
        raise VembedError(
            f"{_source(recipe)}: 'data.image_root' {value} resolves to {resolved}, a folder above "
            f"the recipe folder {base}; a relative image root may not climb above the recipe "
            "folder (image paths in the data could then reach any file below it): write the "
            "folder as an absolute path, or move the images into a folder of their own"
        )
    return path


def check_paths(recipe: Any) -> None:
    """Refuse every path key that leaves its root (nothing needs to exist for this check).

    ``@data_root/`` paths are checked only when a data root is set: without one the
    recipe is fine, the machine just lacks the data (``--dry-run`` lists it as missing).
    """
    from vembed_bench.data.data_root import data_root

    for key in PATH_KEYS:
        section, _, name = key.partition(".")
        value = getattr(getattr(recipe, section), name) or ""
        if value.startswith(DATA_ROOT_PREFIX) and data_root() is None:
            continue
        if key == "data.image_root":
            resolve_image_root(recipe)
        elif value:
            resolve_path(recipe, value, key)


def _data_root(recipe: Any, key: str, value: str) -> Path:
    from vembed_bench.data.data_root import ENV_VAR, data_root

    root = data_root()
    if root is None:
        raise VembedError(
            f"{_source(recipe)}: '{key}' {value}: set the data root with --data-root DIR "
            f"(or ${ENV_VAR})"
        )
    return root


def _confine(recipe: Any, key: str, value: str, path: Path, root: Path) -> None:
    resolved, top = path.resolve(), root.resolve()
    if not resolved.is_relative_to(top):
        raise VembedError(
            f"{_source(recipe)}: '{key}' {value} resolves to {resolved}, outside the data root {top}; "
            f"an {DATA_ROOT_PREFIX} path must stay inside it (symlinks included): write an "
            "absolute path to use a folder elsewhere"
        )


def _source(recipe: Any) -> str:
    return getattr(recipe, "source", "") or "recipe"
