"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Results and cache shards are written to a temporary file in the same folder,
flushed to disk, then renamed over the target (``os.replace`` is atomic on
POSIX and Windows when both paths are on the same filesystem). The folder is
then flushed too, so that after a power cut the new name is there as well as
the new bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it into place on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())  # mkstemp files are 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # e.g. a read-only folder: keep the original error
            Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk; best effort, as some platforms
    (Windows) cannot open a folder and some filesystems refuse to sync one."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_json(path: Path, obj: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=1, sort_keys=False, ensure_ascii=False)
        handle.write("\n")


def write_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
