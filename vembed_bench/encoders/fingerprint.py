"""Content fingerprints of model folders, keyed into the embedding cache.

A fingerprint must change whenever the embeddings could change: any weight or
tokenizer file, or a setting such as pooling or max_length. Names and paths are
not enough (a folder can be overwritten by a new checkpoint), so we hash file
contents. Hashing a 15 GB checkpoint takes about a minute, so each file's
digest is remembered (:mod:`vembed_bench.filehash`, shared with the data
fingerprint); an unchanged file is never read twice. The same memo keeps a few
other costly derived digests (:func:`vembed_bench.filehash.remembered`), such as
the state-dict digest of a folder's weights, keyed by the folder's content digest.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from vembed_bench.filehash import file_digests, file_sha256, remembered

__all__ = ["cache_dir", "combine", "file_sha256", "folder_digest", "remembered", "state_dict_digest"]


def cache_dir() -> Path:
    """The tool's cache folder (one rule for every cache: :func:`vembed_bench.cache_home.default_cache_dir`)."""
    from vembed_bench.cache_home import default_cache_dir

    return default_cache_dir().expanduser()


def folder_digest(folder: str | Path) -> str:
    """sha256 over every model file's relative path and content digest.

    Hidden entries (``.git``, ``.cache``, ``.gitattributes``) and ``*.md`` model
    cards are skipped: they never change what the model computes, and download
    tools rewrite them.
    """
    root = Path(folder).resolve()
    files = list(_model_files(root))
    outer = hashlib.sha256()
    for (rel, _), digest in zip(files, file_digests(path for _, path in files)):
        outer.update(rel.encode("utf-8") + b"\0" + digest.encode("ascii") + b"\n")
    return outer.hexdigest()


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
