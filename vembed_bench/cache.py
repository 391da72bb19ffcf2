"""The embedding cache: never encode the same items with the same model twice.

An entry is keyed by everything that changes the vectors: the model's content
fingerprint and settings, the role (query or document), the prompt, and the
content of the items. Encoding is done shard by shard and each shard is
written atomically, so an interrupted run resumes from the shards on disk.
The policy is explicit (:class:`CachePolicy`), nothing is guessed.

Multi-vector (late interaction) embeddings are ragged, one ``(tokens, dim)``
matrix per item; they are stored flat, as all token rows stacked
(``tokens.npy``) plus ``offsets.npy`` (item ``i`` is rows
``offsets[i]:offsets[i+1]``), with the same shards and resume
(:meth:`EmbeddingCache.get_or_compute_multi`). The offsets file is written
last, so its presence means the entry is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vembed_bench.atomic import write_json, write_npy
from vembed_bench.cache_home import default_cache_dir
from vembed_bench.data.loading import items_fingerprint
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 4096


class CachePolicy(str, Enum):
    """``use``: read what exists, compute and store the rest; ``refresh``: recompute
    and overwrite; ``off``: neither read nor write."""

    USE = "use"
    REFRESH = "refresh"
    OFF = "off"


def cache_key(model_fingerprint: str, role: str, settings: dict[str, Any], items: Sequence[Item]) -> str:
    """The hex key of one cache entry."""
    payload = {
        "model": model_fingerprint,
        "role": role,
        "settings": settings,
        "items": items_fingerprint(list(items)),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def manifest_key(*parts: Any) -> str:
    """Hex key of an encode manifest (see :meth:`EmbeddingCache.read_manifest`)."""
    return hashlib.sha256(json.dumps(["manifest-v1", *parts], sort_keys=True, default=str).encode()).hexdigest()


class EmbeddingCache:
    """Sharded, resumable on-disk store of embedding matrices."""

    def __init__(self, root: Path | None = None, policy: CachePolicy | str = CachePolicy.USE,
                 shard_size: int = DEFAULT_SHARD_SIZE) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"
        self.policy = CachePolicy(policy)
        self.shard_size = shard_size
        self.hits = 0
        self.misses = 0

    def _entry(self, key: str) -> Path:
        return self.root / key[:2] / key

    def contains(self, key: str) -> bool:
        return (self._entry(key) / "embeddings.npy").is_file()

    def load(self, key: str) -> np.ndarray:
        """Read a complete entry (counted as a hit)."""
        self.hits += 1
        return np.load(self._entry(key) / "embeddings.npy", allow_pickle=False)

    def read_manifest(self, key: str) -> dict[str, Any] | None:
        """An encode manifest records, for a model folder + options + items, the encoder's
        own description and the two entry keys, so a full hit needs no model at all."""
        if self.policy is not CachePolicy.USE:
            return None
        path = self.root / "manifests" / f"{key}.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def write_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        if self.policy is not CachePolicy.OFF:
            write_json(self.root / "manifests" / f"{key}.json", manifest)

    def get_or_compute(self, key: str, items: Sequence[Item],
                       compute: Callable[[Sequence[Item]], np.ndarray],
                       meta: dict[str, Any] | None = None) -> np.ndarray:
        """Return the embeddings of ``items``, computing only what is not stored."""
        if self.policy is CachePolicy.OFF:
            self.misses += 1
            return compute(items)
        entry = self._entry(key)
        final = entry / "embeddings.npy"
        if self.policy is CachePolicy.REFRESH and entry.exists():
            shutil.rmtree(entry)
        if final.is_file():
            return self.load(key)
        self.misses += 1
        shards = []
        for start in range(0, len(items), self.shard_size):
            shard_path = entry / f"shard-{start // self.shard_size:06d}.npy"
            if shard_path.is_file():
                shards.append(np.load(shard_path, allow_pickle=False))
                log.info("resumed shard %s", shard_path.name)
                continue
            shard = np.ascontiguousarray(compute(items[start:start + self.shard_size]), dtype=np.float32)
            write_npy(shard_path, shard)
            shards.append(shard)
        embeddings = np.concatenate(shards) if shards else np.zeros((0, 0), np.float32)
        write_npy(final, embeddings)
        write_json(entry / "meta.json", {"key": key, "count": len(items), **(meta or {})})
        for shard_path in entry.glob("shard-*.npy"):
            shard_path.unlink()
        return embeddings

    # -- multi-vector (ragged) entries -----------------------------------------------------------
    def contains_multi(self, key: str) -> bool:
        return (self._entry(key) / "offsets.npy").is_file()

    def load_multi(self, key: str) -> list[np.ndarray]:
        """Read a complete multi-vector entry (counted as a hit): one matrix per item."""
        self.hits += 1
        entry = self._entry(key)
        tokens = np.load(entry / "tokens.npy", allow_pickle=False)
        offsets = np.load(entry / "offsets.npy", allow_pickle=False)
        return _split(tokens, offsets)

    def get_or_compute_multi(self, key: str, items: Sequence[Item],
                             compute: Callable[[Sequence[Item]], Sequence[np.ndarray]],
                             meta: dict[str, Any] | None = None) -> list[np.ndarray]:
        """:meth:`get_or_compute` for token matrices: one ``(tokens, dim)`` array per item."""
        if self.policy is CachePolicy.OFF:
            self.misses += 1
            return [np.asarray(m, dtype=np.float32) for m in compute(items)]
        entry = self._entry(key)
        if self.policy is CachePolicy.REFRESH and entry.exists():
            shutil.rmtree(entry)
        if self.contains_multi(key):
            return self.load_multi(key)
        self.misses += 1
        tokens, lengths = [], []
        for start in range(0, len(items), self.shard_size):
            stem = f"shard-{start // self.shard_size:06d}"
            tokens_path, lengths_path = entry / f"{stem}.tokens.npy", entry / f"{stem}.lengths.npy"
            if lengths_path.is_file() and tokens_path.is_file():  # lengths are written last
                tokens.append(np.load(tokens_path, allow_pickle=False))
                lengths.append(np.load(lengths_path, allow_pickle=False))
                log.info("resumed shard %s", stem)
                continue
            chunk = items[start:start + self.shard_size]
            flat, counts = _flatten(compute(chunk), len(chunk))
            write_npy(tokens_path, flat)
            write_npy(lengths_path, counts)
            tokens.append(flat)
            lengths.append(counts)
        dims = {t.shape[1] for t in tokens if t.shape[0]}
        if len(dims) > 1:
            raise VembedError(f"cache entry {key[:12]}: token dimension changed between shards ({sorted(dims)}); "
                              "re-run with --cache refresh")
        flat = np.concatenate(tokens) if tokens else np.zeros((0, 0), np.float32)
        counts = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        write_npy(entry / "tokens.npy", flat)
        write_npy(entry / "offsets.npy", offsets)
        write_json(entry / "meta.json", {"key": key, "count": len(items), "multi_vector": True,
                                         "tokens": int(offsets[-1]), **(meta or {})})
        for shard_path in entry.glob("shard-*.npy"):
            shard_path.unlink()
        return _split(flat, offsets)


def _flatten(matrices: Sequence[np.ndarray], expected: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack per-item token matrices into (all rows, per-item row counts), checked."""
    mats = [np.ascontiguousarray(m, dtype=np.float32) for m in matrices]
    if len(mats) != expected:
        raise VembedError(f"multi-vector encoder returned {len(mats)} matrices for {expected} items; "
                          "it must return one (tokens, dim) matrix per item")
    dims = {m.shape[1] for m in mats if m.ndim == 2}
    if any(m.ndim != 2 for m in mats) or len(dims) > 1:
        raise VembedError("multi-vector encoder must return 2-D (tokens, dim) matrices of one dimension; "
                          f"got shapes {sorted({m.shape for m in mats})[:3]}")
    flat = np.concatenate(mats) if mats else np.zeros((0, 0), np.float32)
    return flat, np.array([m.shape[0] for m in mats], dtype=np.int64)


def _split(tokens: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
