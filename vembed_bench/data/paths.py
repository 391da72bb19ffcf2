"""Confinement of paths written in data files and task cards to the folder they are relative to.

A dataset row or a task card must never make the tool read files elsewhere on
the user's machine: ``../`` components, absolute paths and symlinks that point
out of the folder are all caught by comparing fully resolved paths.
"""

from __future__ import annotations

from pathlib import Path

from vembed_bench.errors import VembedError


def resolve_inside(base: Path, value: str | Path) -> Path | None:
    """``base / value`` with every symlink resolved, or ``None`` when it is not inside ``base``.

    ``base`` is resolved too, so a base reached through a symlink is fine; an
    absolute ``value`` replaces ``base`` (pathlib's rule) and is then outside.
    """
    root = Path(base).resolve()
    candidate = (root / value).resolve()
    return candidate if candidate.is_relative_to(root) else None


def is_plain_name(value: str) -> bool:
    """Whether ``value`` is one file-name component: not empty, ``.`` or ``..``, no ``/`` or ``\\``."""
    return bool(value) and value not in {".", ".."} and not any(c in value for c in "/\\\0")


def require_plain_name(value: str, place: str, what: str) -> str:
    """``value`` when it is a single file-name component (no ``/``, ``\\``, ``.`` or ``..``), else fail.

    Split and dataset names become parts of file names (``qrels/<split>.tsv``);
    one holding a path separator would point the loader at another folder.
    """
    if not is_plain_name(value):
        raise VembedError(f"{place}: {what} '{value}' must be a plain name, without '/', '\\' or '..'")
    return value
