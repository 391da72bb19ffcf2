"""Report files: written atomically, with ``\\n`` line ends, readable like ordinary files.

Markdown and HTML are written as bytes so that line ends are ``\\n`` on every
platform and re-runs are byte-identical.
"""

from __future__ import annotations

from pathlib import Path

from vembed_bench.atomic import atomic_open

__all__ = ["write_bytes", "write_text"]


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically."""
    path = Path(path)
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text with ``\\n`` line ends on every platform (byte-identical re-runs)."""
    return write_bytes(path, text.encode("utf-8"))
