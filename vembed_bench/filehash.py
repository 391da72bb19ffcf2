"""sha256 digests of files, remembered across runs so an unchanged file is read once.

Both the model fingerprint (every weight file of a checkpoint) and the data
fingerprint (every image of a dataset) are content hashes: a file overwritten
in place must change them, whatever its name and size. Hashing a 15 GB
checkpoint or 60,000 images takes a while, so each digest is remembered in
``fingerprints.json`` in the cache folder, keyed by the file's absolute path.

When is a remembered digest trusted? When the file's stat signature is the one
recorded with it: size, ``mtime_ns``, ``ctime_ns`` and inode. This is the
stat heuristic git's index relies on (build tools and dataset caches use
size and mtime alone), with two strengthenings:

* ``ctime`` is in the signature. Tools that copy or restore a file's mtime
  (``cp -p``, ``rsync -t``, ``os.utime``) cannot set ctime: the kernel sets it
  to "now" on every content or metadata change, so a file rewritten with the
  same size and its old mtime put back is still hashed again.
* "racily clean" entries are not trusted (git's rule): a digest taken less than
  :data:`RACY_NS` after the file's last change could miss a second write within
  the same timestamp tick (1-2 s on FAT, HFS+ and some network filesystems), so
  such a file is hashed again next time and only the later digest is trusted.

What remains is a file changed without its ctime changing, which takes
resetting the system clock or writing to the block device: the memo is
"correct in practice", not a proof. Delete ``fingerprints.json`` to hash
everything again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from vembed_bench.cache_home import default_cache_dir
from vembed_bench.errors import VembedError

MEMO_FILE = "fingerprints.json"
RACY_NS = 2_000_000_000
"""A digest is trusted only for files unchanged for this long before it was taken (2 s)."""
_CHUNK = 1 << 20
_SIGNATURE = ("size", "mtime_ns", "ctime_ns", "ino")

# memo file -> its entries, loaded once per process (the file can hold 100,000 entries)
_LOADED: dict[Path, dict[str, Any]] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of one file, read in 1 MiB chunks (no memo)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def memo_path() -> Path:
    """``<cache dir>/fingerprints.json``."""
    return default_cache_dir().expanduser() / MEMO_FILE


def file_digests(paths: Iterable[str | Path], memo: Path | None = None) -> list[str]:
    """The sha256 of each file in ``paths`` (in order), from the memo when it can be trusted.

    The memo is read once per process and written (atomically, merged with what
    other processes wrote meanwhile) once per call, only when a digest was new.
    A file that cannot be read is a :class:`VembedError` naming it.
    """
    memo = memo or memo_path()
    entries = _LOADED.get(memo)
    if entries is None:
        entries = _LOADED[memo] = _read_memo(memo)
    fresh: dict[str, dict[str, Any]] = {}
    digests = []
    for path in paths:
        key, signature = _signature(Path(path))
        entry = entries.get(key)
        if _trusted(entry, signature):
            digests.append(entry["sha256"])
            continue
        hashed_ns = time.time_ns()
        try:
            digest = file_sha256(key)
        except OSError as err:
            raise VembedError(f"{path}: cannot read the file to fingerprint it ({err.strerror})") from None
        entries[key] = fresh[key] = {**signature, "sha256": digest, "hashed_ns": hashed_ns}
        digests.append(digest)
    if fresh:
        _write_memo(memo, fresh)
    return digests


def remembered(key: str, compute: Callable[[], Mapping[str, Any] | None],
               memo: Path | None = None) -> dict[str, Any] | None:
    """A small JSON record kept in the same memo under ``key``, computed once.

    ``key`` must name everything the record depends on (e.g. a folder's content
    digest and the library version); ``compute`` returning ``None`` is not stored.
    """
    memo = memo or memo_path()
    entries = _LOADED.get(memo)
    if entries is None:
        entries = _LOADED[memo] = _read_memo(memo)
    entry = entries.get(key)
    if isinstance(entry, dict):
        return dict(entry)
    value = compute()
    if value is None:
        return None
    entries[key] = dict(value)
    _write_memo(memo, {key: dict(value)})
    return dict(value)


def _signature(path: Path) -> tuple[str, dict[str, int]]:
    """The memo key (the absolute path) and the stat signature of the file it leads to.

    The key is not symlink-resolved: ``Path.resolve`` costs ~40 us a file (seconds
    for 60,000 images, on every fingerprint), and need not be canonical, because
    ``stat`` follows links and the signature holds the target's inode: a link
    pointed at another file never matches the old entry.
    """
    key = os.path.abspath(path)
    try:
        st = os.stat(key)  # follows symlinks: Hugging Face snapshots link to blobs
    except OSError as err:
        raise VembedError(f"{path}: cannot read the file to fingerprint it ({err.strerror})") from None
    return key, {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino}


def _trusted(entry: Any, signature: dict[str, int]) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        return False
    if any(entry.get(name) != signature[name] for name in _SIGNATURE):
        return False
    last_change = max(signature["mtime_ns"], signature["ctime_ns"])
    hashed_ns = entry.get("hashed_ns")
    return isinstance(hashed_ns, int) and last_change + RACY_NS < hashed_ns


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or corrupt: start over, it is only a memo
    return data if isinstance(data, dict) else {}


def _write_memo(path: Path, fresh: dict[str, dict[str, Any]]) -> None:
    """Merge ``fresh`` into the file on disk and replace it atomically."""
    from vembed_bench.atomic import write_json

    merged = _read_memo(path)
    merged.update(fresh)
    try:
        write_json(path, merged)
    except OSError:
        return  # a read-only cache folder only costs hashing again next time
