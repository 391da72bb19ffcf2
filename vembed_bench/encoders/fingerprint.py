"""Content fingerprints of model folders, keyed into the embedding cache.

A fingerprint must change whenever the embeddings could change: any weight or
tokenizer file, or a setting such as pooling or max_length. Names and paths are
not enough (a folder can be overwritten by a new checkpoint), so we hash file
contents. Hashing a 15 GB checkpoint takes about a minute, so each file's
digest is remembered in a small JSON file keyed by (absolute path, size,
mtime_ns); an unchanged file is never read twice. The same file remembers a
few other costly derived digests (:func:`remembered`), such as the state-dict
digest of a folder's weights, keyed by the folder's content digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

_CACHE_FILE = "fingerprints.json"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The tool's cache folder (one rule for every cache: :func:`vembed_bench.cache.default_cache_dir`)."""
    from vembed_bench.cache import default_cache_dir

    return default_cache_dir().expanduser()


def folder_digest(folder: str | Path) -> str:
    """sha256 over every model file's relative path and content digest.

    Hidden entries (``.git``, ``.cache``, ``.gitattributes``) and ``*.md`` model
    cards are skipped: they never change what the model computes, and download
    tools rewrite them.
    """
    root = Path(folder).resolve()
    cache_path = cache_dir() / _CACHE_FILE
    cache = _read_cache(cache_path)
    changed = False
    outer = hashlib.sha256()
    for rel, path in _model_files(root):
        st = path.stat()  # follows symlinks (Hugging Face hub snapshots are symlinks to blobs)
        key = str(path)
        entry = cache.get(key)
        if (
            isinstance(entry, dict)
            and entry.get("size") == st.st_size
            and entry.get("mtime_ns") == st.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            digest = entry["sha256"]
        else:
            digest = file_sha256(path)
            cache[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            changed = True
        outer.update(rel.encode("utf-8") + b"\0" + digest.encode("ascii") + b"\n")
    if changed:
        _write_cache(cache_path, cache)
    return outer.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def state_dict_digest(module: Any) -> str:
    """sha256 over a torch module's parameter and buffer names, dtypes, shapes and bytes.

    Used when there is no folder to hash (a model object built or modified in
    memory). Tensors are viewed as raw bytes, so bf16 works without numpy support.
    """
    import torch

    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            raw = t.to("cpu").contiguous().reshape(-1).view(torch.uint8)
            h.update(raw.numpy())  # buffer protocol: no extra copy
    return h.hexdigest()


def remembered(key: str, compute: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """A small JSON record stored in the fingerprint cache under ``key``, computed once.

    ``key`` must name everything the record depends on (e.g. a folder's content
    digest and the library version); ``compute`` returning ``None`` is not stored.
    """
    cache_path = cache_dir() / _CACHE_FILE
    entry = _read_cache(cache_path).get(key)
    if isinstance(entry, dict):
        return entry
    value = compute()
    if value is None:
        return None
    cache = _read_cache(cache_path)  # re-read: another process may have written meanwhile
    cache[key] = dict(value)
    _write_cache(cache_path, cache)
    return dict(value)


def combine(kind: str, content: str, settings: Mapping[str, Any]) -> str:
    """The final fingerprint: encoder kind + content digest + output-changing settings."""
    payload = json.dumps(
        {"kind": kind, "content": content, "settings": dict(settings)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _model_files(root: Path) -> Iterator[tuple[str, Path]]:
    entries: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or name.lower().endswith(".md"):
                continue
            path = Path(dirpath) / name
            entries.append((path.relative_to(root).as_posix(), path))
    return iter(sorted(entries))


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # missing or corrupt: start over, it is only a cache
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, cache: Mapping[str, Any]) -> None:
    """Write atomically so a crash or a parallel run never leaves half a file."""
    from vembed_bench.atomic import write_json

    try:
        write_json(path, dict(cache))
    except OSError:
        return  # a read-only cache dir only costs re-hashing next time
