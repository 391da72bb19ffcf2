"""Where downloaded benchmark data lives: ``--data-root`` / ``$VEMBED_DATA_ROOT``.

Public benchmarks (Stanford Online Products, Flickr30k) cannot ship with the
tool, so their cards name a sub-folder of one user-chosen data root. When the
data is missing, the error says what to download and exactly where to put it,
so that the fix is one copy-paste away instead of a traceback.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vembed_bench.data.cards import TaskCard, resolve_param_path
from vembed_bench.data.paths import resolve_inside
from vembed_bench.errors import VembedError

ENV_VAR = "VEMBED_DATA_ROOT"


def data_root() -> Path | None:
    """The configured data root (``$VEMBED_DATA_ROOT``), or ``None`` when unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    return Path(value).expanduser() if value else None


def set_data_root(path: str | Path | None) -> None:
    """Make ``path`` the data root of this process (what ``--data-root`` does)."""
    if path is not None:
        os.environ[ENV_VAR] = str(Path(path).expanduser().resolve())


@contextmanager
def use_data_root(path: str | Path | None) -> Iterator[None]:
    """Temporarily set the data root (for library users and tests)."""
    old = os.environ.get(ENV_VAR)
    try:
        set_data_root(path)
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def locate_dataset(card: TaskCard, *, dirname: str, marker: str, download: str) -> Path:
    """The folder holding ``marker`` for ``card``.

    ``params.path`` of the card wins (relative to the card file); otherwise
    ``<data root>/<dirname>`` (or the data root itself when the marker is
    directly inside it). ``dirname`` must resolve inside the data root (a
    symlink out of it is refused, like ``..``). ``download`` tells the user where the data comes
    from; it goes into the error raised when nothing is found.
    """
    if card.params.get("path"):
        folder = resolve_param_path(str(card.params["path"]), card)
        if not (folder / marker).is_file():
            raise VembedError(
                f"task '{card.name}': {folder / marker} not found (params.path of {card.path}); "
                f"{download}"
            )
        return folder
    root = data_root()
    if root is None:
        raise VembedError(
            f"task '{card.name}' needs data that is not shipped with the tool: {download}, "
            f"so that <DATA_ROOT>/{dirname}/{marker} exists, then pass --data-root DATA_ROOT "
            f"(or set {ENV_VAR})"
        )
    if resolve_inside(root, dirname) is None:
        raise VembedError(
            f"{card.path or card.name}: params.dirname '{dirname}' resolves outside the data root {root}; "
            "name a folder inside it, or give the data's absolute path as params.path"
        )
    for folder in (root / dirname, root):
        if (folder / marker).is_file():
            return folder
    raise VembedError(
        f"task '{card.name}': {root / dirname / marker} not found under the data root {root}; "
        f"{download}, so that {root / dirname / marker} exists"
    )
