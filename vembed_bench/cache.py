"""The embedding cache: never encode the same items with the same model twice, never trust bad bytes.

An entry is keyed by everything that changes the vectors: the model's content
fingerprint and settings, the role (query or document), the prompt, and the
content of the items. Encoding is done shard by shard and each shard is
written atomically, so an interrupted run resumes from the shards on disk.
The policy is explicit (:class:`CachePolicy`), nothing is guessed.

Layout of one entry, ``<root>/<key[:2]>/<key>/``::

    embeddings.npy           single-vector: the (items, dim) float32 matrix
    tokens.npy, offsets.npy  multi-vector: all token rows stacked, and item i = rows offsets[i]:offsets[i+1]
    meta.json                written last: format, key, kind, item count, fingerprint of the item ids,
                             and per data file its size, SHA-256, shape and dtype
    shard-000003.npy         while encoding (single-vector): rows of items [3*shard_size, 4*shard_size)
    shard-000003.tokens.npy, shard-000003.lengths.npy   the same, multi-vector
    shard-000003.json        written after its shard's data: the shard's records, start, count, item ids

The folder of an entry is its lock (:func:`~vembed_bench.cache_files.folder_lock`):
whoever computes, heals or refreshes an entry holds it, so concurrent runs
that need the same entry wait for the first one and then load its result.

Trust: a ``meta.json`` means the entry is complete; every read checks each
data file's size, header, shape, dtype and checksum against it (and a
shard's against its sidecar before it is resumed from). A file that does not
match (truncated, rows permuted, a byte flipped, a file from another entry,
a missing or garbled meta, an entry of the old format without checksums) is
reported in one warning line naming the entry, removed, and encoded again.

Contract for callers (the pipeline's model-free path):

* ``contains(key)`` is True only for an entry that verified, and keeps the
  verified array; ``load(key)`` right after returns that very array without
  reading or hashing again, so ``if contains(k): x = load(k)`` cannot return
  bad data. ``load`` of a key that was not verified by ``contains`` reads and
  verifies it, and raises :class:`CacheEntryError` (a :class:`VembedError`)
  if it is absent or corrupt.
* ``get_or_compute`` never raises for a corrupt entry: it heals it.
* Distributed encoding (:mod:`vembed_bench.distributed`) fills an entry's
  shards from elsewhere: ``missing_shards(key, items)`` says which are not
  stored yet, ``write_shard(key, index, items, vectors)`` stores one in the
  very format an interrupted encode leaves, and the ``get_or_compute`` that
  follows resumes from all of them and only assembles the entry.
* A single-vector matrix of at least ``mmap_min_bytes`` (:data:`MMAP_MIN_BYTES`)
  comes back as a read-only ``np.memmap`` of the verified file instead of an
  array in memory (``load(key, mmap=True/False)`` forces either); its bytes are
  hashed in chunks, so neither verifying nor searching it
  (:mod:`vembed_bench.search` searches a mapped corpus in blocks) needs the
  whole matrix in memory.
* :meth:`EmbeddingCache.check_writable` before encoding turns an unwritable
  cache folder into one error line before any work; a write that still fails
  later raises a :class:`VembedError` naming the file, and keeps the shards
  already written for the re-run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vembed_bench.atomic import write_json
from vembed_bench.cache_files import CorruptFile, folder_lock, read_checked_npy, write_checked_npy
from vembed_bench.cache_home import default_cache_dir
from vembed_bench.data.loading import items_fingerprint
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 4096
MMAP_MIN_BYTES = 512 << 20
"""Single-vector entries at least this large are memory-mapped, not read into memory."""
FORMAT = 2  # format 1 (no meta checksums) entries are re-encoded
META = "meta.json"
_KEY = re.compile(r"[0-9a-f]{16,128}")


class CachePolicy(str, Enum):
    """``use``: read what exists, compute and store the rest; ``refresh``: recompute
    and overwrite; ``off``: neither read nor write."""

    USE = "use"
    REFRESH = "refresh"
    OFF = "off"


class CacheEntryError(VembedError):
    """:meth:`EmbeddingCache.load` found its entry absent or corrupt (a corrupt one is removed)."""


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
    payload = json.dumps(["manifest-v1", *parts], sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


Arrays = dict[str, np.ndarray]
ShardSpan = tuple[int, int, int]  # (shard index, first item, one past the last item)
Verified = tuple[dict[str, Any], Arrays]  # (meta.json, its data files' arrays by file name)


@dataclass(frozen=True)
class _Layout:
    """How one kind of entry (single- or multi-vector) is encoded, stored and checked."""

    kind: str
    files: tuple[str, ...]  # data files of a complete entry
    mappable: bool  # large files may be returned memory-mapped
    shard_parts: tuple[str, ...]  # a shard's data files are shard-NNNNNN.<part>
    encode: Callable[[Callable[[Sequence[Item]], Any], Sequence[Item]], Arrays]  # one shard's parts
    combine: Callable[[list[Arrays], str], Arrays]  # shards' parts -> the entry's files
    check: Callable[[Arrays, int], str | None]  # what is inconsistent in an entry of `count` items
    check_shard: Callable[[Arrays, int], str | None]


class EmbeddingCache:
    """Sharded, resumable, verified on-disk store of embedding matrices (see the module docstring)."""

    def __init__(self, root: Path | None = None, policy: CachePolicy | str = CachePolicy.USE,
                 shard_size: int | None = None, mmap_min_bytes: int | None = MMAP_MIN_BYTES) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "embeddings"
        self.policy = CachePolicy(policy)
        self.shard_size = shard_size or DEFAULT_SHARD_SIZE  # read now, so tests can patch the default
        self.mmap_min_bytes = mmap_min_bytes
        """Dense entries at least this large are returned memory-mapped (None: never unless asked)."""
        self.hits = 0
        self.misses = 0
        self._verified: dict[tuple[str, str], Verified] = {}  # what contains() checked, for load()
        self._writable = False
        self._refreshing: set[str] = set()  # refresh: keys whose shards this process has begun anew

    def _entry(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise VembedError(f"'{key[:80]}' is not an embedding cache key (lowercase hex digits)")
        return self.root / key[:2] / key

    # -- single-vector entries -------------------------------------------------------------------
    def contains(self, key: str) -> bool:
        """Whether ``get_or_compute(key, ...)`` would need no encoding: the entry exists and
        verifies (a corrupt one is reported, removed, and False). The verified array is kept for
        :meth:`load`. Always False unless the policy is ``use``."""
        return self._contains(_DENSE, key)

    def load(self, key: str, *, mmap: bool | None = None) -> np.ndarray:
        """A complete, verified entry (counted as a hit); the array :meth:`contains` verified if it
        did. Raises :class:`CacheEntryError` if the entry is absent or fails verification.

        ``mmap=True`` returns a read-only ``np.memmap`` of the verified file (its bytes hashed in
        chunks, never all in memory at once), ``False`` an array in memory, ``None`` (default) the
        former for files of at least ``mmap_min_bytes``."""
        return self._load(_DENSE, key, mmap)["embeddings.npy"]

    def get_or_compute(self, key: str, items: Sequence[Item],
                       compute: Callable[[Sequence[Item]], np.ndarray],
                       meta: dict[str, Any] | None = None) -> np.ndarray:
        """Return the embeddings of ``items``, computing only what is not stored (and verified)."""
        if self.policy is CachePolicy.OFF:
            self.misses += 1
            return compute(items)
        return self._get_or_compute(_DENSE, key, items, compute, meta)["embeddings.npy"]

    # -- multi-vector (ragged) entries -----------------------------------------------------------
    def contains_multi(self, key: str) -> bool:
        """:meth:`contains` for a multi-vector entry."""
        return self._contains(_MULTI, key)

    def load_multi(self, key: str) -> list[np.ndarray]:
        """:meth:`load` for a multi-vector entry: one ``(tokens, dim)`` matrix per item."""
        arrays = self._load(_MULTI, key)
        return _split(arrays["tokens.npy"], arrays["offsets.npy"])

    def get_or_compute_multi(self, key: str, items: Sequence[Item],
                             compute: Callable[[Sequence[Item]], Sequence[np.ndarray]],
                             meta: dict[str, Any] | None = None) -> list[np.ndarray]:
        """:meth:`get_or_compute` for token matrices: one ``(tokens, dim)`` array per item."""
        if self.policy is CachePolicy.OFF:
            self.misses += 1
            return [np.asarray(m, dtype=np.float32) for m in compute(items)]
        arrays = self._get_or_compute(_MULTI, key, items, compute, meta)
        return _split(arrays["tokens.npy"], arrays["offsets.npy"])

    # -- shards written by others (distributed encoding) ----------------------------------------
    def shard_spans(self, n_items: int) -> list[ShardSpan]:
        """``(index, start, stop)`` of every shard of an entry of ``n_items`` items."""
        return [(index, start, min(start + self.shard_size, n_items))
                for index, start in enumerate(range(0, n_items, self.shard_size))]

    def missing_shards(self, key: str, items: Sequence[Item], *, multi: bool = False) -> list[ShardSpan]:
        """The shards of entry ``key`` that :meth:`get_or_compute` would still have to encode.

        None when the entry is complete and verifies; otherwise every shard without
        a sidecar that describes exactly its items and data files of the recorded
        sizes (a cheap check: :meth:`get_or_compute` verifies each shard's checksum
        before it resumes from it, and encodes a bad one again itself). Under the
        ``refresh`` policy the first call for a key empties the entry, shards
        included, so every shard is missing; the shards written after it are then
        kept by :meth:`get_or_compute`. Raises :class:`VembedError` with the ``off``
        policy (nothing is stored) or if the cache folder is not writable.
        """
        if self.policy is CachePolicy.OFF:
            raise VembedError("shards are written into the embedding cache, which is off (--cache off); "
                              "use --cache use or refresh to encode on several workers")
        layout = _MULTI if multi else _DENSE
        self.check_writable()
        if self.policy is CachePolicy.USE and self._contains(layout, key) \
                and _same_items(self._verified[(layout.kind, key)][0], items):
            return []
        entry = self._entry(key)
        with folder_lock(entry) as locked:
            if self.policy is CachePolicy.REFRESH and key not in self._refreshing:
                _clear(entry, keep_shards=False, keep_temporary=not locked)
                self._refreshing.add(key)
            return [span for span in self.shard_spans(len(items))
                    if not self._shard_recorded(layout, key, span, items)]

    def write_shard(self, key: str, index: int, items: Sequence[Item], vectors: Any, *,
                    multi: bool = False) -> None:
        """Store shard ``index`` of entry ``key`` (the rows of ``items[index * shard_size:]``, at most
        ``shard_size`` of them) in the format :meth:`get_or_compute` resumes from: the checksummed
        data files, then their sidecar. ``vectors``: an ``(n, dim)`` array, or (``multi``) one
        ``(tokens, dim)`` matrix per item. Nothing is written if the entry was completed meanwhile
        (by another process holding its lock)."""
        layout = _MULTI if multi else _DENSE
        start = index * self.shard_size
        chunk = items[start:start + self.shard_size]
        if index < 0 or not chunk:
            raise VembedError(f"cache entry {key[:12]} has no shard {index} ({len(items)} items, "
                              f"{self.shard_size} per shard)")
        parts = layout.encode(lambda _chunk: vectors, chunk)
        entry = self._entry(key)
        with folder_lock(entry):
            if (entry / META).exists():
                return
            self._write_shard(layout, key, index, start, chunk, parts)

    # -- encode manifests ------------------------------------------------------------------------
    def read_manifest(self, key: str) -> dict[str, Any] | None:
        """An encode manifest records, for a model folder + options + items, the encoder's
        own description (``name``, ``model_info``) and the two entry keys (``query_key``,
        ``document_key``), so a full hit needs no model at all. A missing, garbled or
        incomplete manifest is None: it is only a shortcut, the entries stay verified. So is one
        written under another key (a file copied over this one): its entries are verified but
        are another model's or other items' vectors."""
        if self.policy is not CachePolicy.USE:
            return None
        path = self.root / "manifests" / f"{key}.json"
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not (isinstance(manifest, dict) and isinstance(manifest.get("name"), str)
                and isinstance(manifest.get("model_info"), dict)
                and all(isinstance(manifest.get(k), str) and _KEY.fullmatch(manifest[k])
                        for k in ("query_key", "document_key"))):
            log.info("ignoring the incomplete encode manifest %s", path)
            return None
        if manifest.pop("key", None) != key:
            log.info("ignoring the encode manifest %s: it was written for another key", path)
            return None
        return manifest

    def write_manifest(self, key: str, manifest: dict[str, Any]) -> None:
        """Store an encode manifest; one that cannot be written is only a missed shortcut (a warning)."""
        if self.policy is CachePolicy.OFF:
            return
        path = self.root / "manifests" / f"{key}.json"
        try:
            write_json(path, {**manifest, "key": key})
        except OSError as err:
            log.warning("could not write the encode manifest %s (%s); the next run loads the model to find "
                        "its cache entries", path, _reason(err))

    # -- writability -----------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Raise :class:`VembedError` naming the folder and the reason if no file can be created
        and written in it (read-only, no permission, disk full). Call it before encoding, so an
        unwritable cache fails in a second instead of after the whole encode; ``get_or_compute``
        also calls it before its first encode. Nothing to check with the ``off`` policy."""
        if self.policy is CachePolicy.OFF or self._writable:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=self.root)
            try:
                os.write(fd, bytes(4096))
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as err:
            raise VembedError(f"the embedding cache folder {self.root} is not writable ({_reason(err)}); "
                              "free space or fix its permissions, or pass --cache-dir DIR or --cache off"
                              ) from None
        self._writable = True

    # -- the common machinery --------------------------------------------------------------------
    def _contains(self, layout: _Layout, key: str) -> bool:
        if self.policy is not CachePolicy.USE:
            return False
        if (layout.kind, key) not in self._verified:
            found = self._verify_or_heal(layout, key)
            if found is None:
                return False
            self._verified[(layout.kind, key)] = found
        return True

    def _load(self, layout: _Layout, key: str, mmap: bool | None = None) -> Arrays:
        found = self._verified.pop((layout.kind, key), None)
        if found is not None and mmap is not None and any(
                isinstance(a, np.memmap) != mmap for a in found[1].values()):
            found = None  # verified in the other form than asked for: verify again in this one
        found = found or self._verify_or_heal(layout, key, mmap)
        if found is None:
            raise CacheEntryError(f"embedding cache entry {key[:12]} ({self._entry(key)}) is missing or "
                                  "failed verification; run again and it will be encoded")
        self.hits += 1
        return found[1]

    def _verify_or_heal(self, layout: _Layout, key: str, mmap: bool | None = None) -> Verified | None:
        """The verified entry, or None if absent; a corrupt one is reported once and removed.

        A failed check is repeated under the entry's lock before anything is removed:
        another process may be between writing the data and the meta of this entry.
        """
        try:
            return self._verify(layout, key, mmap=mmap)
        except CorruptFile:
            pass
        with folder_lock(self._entry(key)):
            try:
                return self._verify(layout, key, mmap=mmap)
            except CorruptFile as err:
                self._discard(layout, key, str(err))
                return None

    def _verify(self, layout: _Layout, key: str, items: Sequence[Item] | None = None, *,
                mmap: bool | None = None) -> Verified | None:
        """Read and check a complete entry; None if there is none, :class:`CorruptFile` if it is bad.

        ``mmap``: see :meth:`load` (only layouts that allow it are ever mapped)."""
        entry = self._entry(key)
        meta_path = entry / META
        if not meta_path.exists():
            if any((entry / name).exists() for name in layout.files):
                raise CorruptFile(f"{META} is missing")
            return None
        meta = _read_record(meta_path, key)
        if meta.get("kind") != layout.kind:
            return None  # an entry of the other kind under this key: not what was asked for
        if not isinstance(meta.get("count"), int) or not isinstance(meta.get("item_ids"), str):
            raise CorruptFile(f"{META} lacks the item count or ids")
        if items is not None and not _same_items(meta, items):
            raise CorruptFile(f"{META} describes {meta['count']} other items than the {len(items)} "
                              "asked for")
        arrays = {name: _read_file(entry / name, meta["files"].get(name),
                                   self._mapped(layout, meta["files"].get(name), mmap))
                  for name in layout.files}
        problem = layout.check(arrays, meta["count"])
        if problem:
            raise CorruptFile(problem)
        return meta, arrays

    def _mapped(self, layout: _Layout, record: Any, mmap: bool | None) -> bool:
        """Whether a data file is returned memory-mapped: as asked, else by its size."""
        if not layout.mappable:
            return False
        if mmap is not None:
            return mmap
        size = record.get("bytes") if isinstance(record, dict) else None
        return self.mmap_min_bytes is not None and isinstance(size, int) and size >= self.mmap_min_bytes

    def _discard(self, layout: _Layout, key: str, reason: str) -> None:
        """Report a corrupt entry in one line and remove it (its meta first: it is then absent)."""
        entry = self._entry(key)
        try:
            for name in (META, *layout.files):
                (entry / name).unlink(missing_ok=True)
            outcome = "removed; it will be encoded again"
        except OSError as err:
            outcome = f"could not remove it ({_reason(err)}); delete {entry} or run with --cache refresh"
        log.warning("embedding cache entry %s (%s): %s; %s", key[:12], entry, reason, outcome)

    def _get_or_compute(self, layout: _Layout, key: str, items: Sequence[Item], compute: Callable[..., Any],
                        info: dict[str, Any] | None) -> Arrays:
        """What :meth:`contains` verified, else the entry read and verified under its lock (so a
        concurrent writer is waited for, then loaded from), else a fresh encode into it."""
        memo = self._verified.pop((layout.kind, key), None)
        if memo is not None and self.policy is CachePolicy.USE and _same_items(memo[0], items):
            self.hits += 1
            return memo[1]
        entry = self._entry(key)
        with folder_lock(entry) as locked:  # waits while another process computes this entry
            if self.policy is CachePolicy.USE:
                try:
                    found = self._verify(layout, key, items)
                except CorruptFile as err:
                    self._discard(layout, key, str(err))
                    found = None
                if found is not None:  # possibly just completed by the process we waited for
                    self.hits += 1
                    return found[1]
            self.check_writable()
            self.misses += 1
            keep_shards = self.policy is CachePolicy.USE or key in self._refreshing
            _clear(entry, keep_shards=keep_shards, keep_temporary=not locked)
            arrays = self._compute(layout, key, items, compute, info)
            self._refreshing.discard(key)
            return arrays

    def _compute(self, layout: _Layout, key: str, items: Sequence[Item], compute: Callable[..., Any],
                 info: dict[str, Any] | None) -> Arrays:
        """Encode shard by shard (resuming from verified shards), then write the entry, meta last."""
        entry = self._entry(key)
        parts = []
        for index, start in enumerate(range(0, len(items), self.shard_size)):
            chunk = items[start:start + self.shard_size]
            shard = self._resume_shard(layout, key, index, start, chunk)
            if shard is None:
                shard = layout.encode(compute, chunk)
                self._write_shard(layout, key, index, start, chunk, shard)
            parts.append(shard)
        arrays = layout.combine(parts, key)
        records = {name: _store_npy(entry / name, arrays[name]) for name in layout.files}
        meta = {"format": FORMAT, "key": key, "kind": layout.kind, "count": len(items),
                "item_ids": _ids_fingerprint(items), "files": records, "info": info or {}}
        _store_json(entry / META, meta)
        for shard_path in entry.glob("shard-*"):
            shard_path.unlink(missing_ok=True)
        return arrays

    def _shard_paths(self, layout: _Layout, key: str, index: int) -> tuple[Path, dict[str, Path]]:
        stem = self._entry(key) / f"shard-{index:06d}"
        return stem.with_name(stem.name + ".json"), {part: stem.with_name(f"{stem.name}.{part}")
                                                     for part in layout.shard_parts}

    def _shard_recorded(self, layout: _Layout, key: str, span: ShardSpan, items: Sequence[Item]) -> bool:
        """Whether shard ``span`` has a sidecar of this entry describing exactly its items, and data
        files of the sizes it records (contents are checked when the shard is resumed)."""
        index, start, stop = span
        sidecar, paths = self._shard_paths(layout, key, index)
        try:
            record = _read_record(sidecar, key)
        except CorruptFile:
            return False
        if record.get("start") != start or record.get("count") != stop - start \
                or record.get("item_ids") != _ids_fingerprint(items[start:stop]):
            return False
        for path in paths.values():
            entry = record["files"].get(path.name)
            try:
                if not isinstance(entry, dict) or path.stat().st_size != entry.get("bytes"):
                    return False
            except OSError:
                return False
        return True

    def _resume_shard(self, layout: _Layout, key: str, index: int, start: int,
                      chunk: Sequence[Item]) -> Arrays | None:
        """A shard left by an interrupted encode, if it verifies; a bad one is reported and removed."""
        sidecar, paths = self._shard_paths(layout, key, index)
        if not sidecar.exists() and not any(p.exists() for p in paths.values()):
            return None
        try:
            if not sidecar.exists():
                raise CorruptFile(f"{sidecar.name} is missing (an interrupted write or the old format)")
            record = _read_record(sidecar, key)
            if record.get("start") != start or record.get("count") != len(chunk) \
                    or record.get("item_ids") != _ids_fingerprint(chunk):
                raise CorruptFile(f"{sidecar.name} describes other items (a different shard size?)")
            shard = {part: _read_file(path, record["files"].get(path.name)) for part, path in paths.items()}
            problem = layout.check_shard(shard, len(chunk))
            if problem:
                raise CorruptFile(problem)
        except CorruptFile as err:
            for path in (sidecar, *paths.values()):
                path.unlink(missing_ok=True)
            log.warning("embedding cache entry %s (%s): shard %d: %s; encoding this shard again",
                        key[:12], self._entry(key), index, err)
            return None
        log.info("resumed shard %s", sidecar.stem)
        return shard

    def _write_shard(self, layout: _Layout, key: str, index: int, start: int, chunk: Sequence[Item],
                     shard: Arrays) -> None:
        sidecar, paths = self._shard_paths(layout, key, index)
        records = {path.name: _store_npy(path, shard[part]) for part, path in paths.items()}
        record = {"format": FORMAT, "key": key, "start": start, "count": len(chunk),
                  "item_ids": _ids_fingerprint(chunk), "files": records}
        _store_json(sidecar, record)


# -- records, files and errors ---------------------------------------------------------------------
def _read_record(path: Path, key: str) -> dict[str, Any]:
    """A meta.json or shard sidecar of entry ``key``, checked for the current format."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptFile(f"{path.name} is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CorruptFile(f"{path.name} is not valid JSON") from None
    except OSError as err:
        raise VembedError(f"cannot read the embedding cache file {path}: {_reason(err)}") from None
    if not isinstance(record, dict):
        raise CorruptFile(f"{path.name} is not a JSON object")
    if record.get("format") != FORMAT or not isinstance(record.get("files"), dict):
        raise CorruptFile(f"{path.name} is of an older cache format without checksums")
    if record.get("key") != key:
        raise CorruptFile(f"{path.name} belongs to entry {str(record.get('key'))[:12]}")
    return record


def _read_file(path: Path, record: Any, mmap: bool = False) -> np.ndarray:
    if not isinstance(record, dict):
        raise CorruptFile(f"no checksum record for {path.name}")
    try:
        return read_checked_npy(path, record, mmap=mmap)
    except FileNotFoundError:  # removed between stat and open
        raise CorruptFile(f"{path.name} is missing") from None
    except OSError as err:
        raise VembedError(f"cannot read the embedding cache file {path}: {_reason(err)}") from None


def _store_npy(path: Path, array: np.ndarray) -> dict[str, Any]:
    try:
        return write_checked_npy(path, array)
    except OSError as err:
        raise _write_error(path, err) from None


def _store_json(path: Path, record: dict[str, Any]) -> None:
    try:
        write_json(path, record)
    except OSError as err:
        raise _write_error(path, err) from None


def _write_error(path: Path, err: OSError) -> VembedError:
    """A failing disk mid-encode, in one actionable line (the atomic write left no partial file)."""
    return VembedError(f"cannot write the embedding cache file {path}: {_reason(err)}; shards already "
                       "written are kept and a re-run resumes from them; free space or fix permissions, "
                       "or pass --cache-dir DIR or --cache off")


def _reason(err: OSError) -> str:
    name = errno.errorcode.get(err.errno or 0)
    return f"{err.strerror or err}" + (f" [{name}]" if name else "")


def _clear(entry: Path, *, keep_shards: bool, keep_temporary: bool) -> None:
    """Empty an entry folder before encoding into it: a refresh drops the resumable shards too;
    temporary files are those of killed writers unless someone may be writing unlocked."""
    if not entry.is_dir():
        return
    for path in entry.iterdir():
        if keep_shards and path.name.startswith("shard-") or keep_temporary and path.name.startswith("."):
            continue
        try:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as err:
            raise VembedError(f"cannot clear the embedding cache folder {entry}: {_reason(err)}; "
                              "fix its permissions or pass --cache-dir DIR") from None


def _ids_fingerprint(items: Sequence[Item]) -> str:
    return hashlib.sha256(json.dumps([item.id for item in items]).encode()).hexdigest()


def _same_items(meta: dict[str, Any], items: Sequence[Item]) -> bool:
    return meta.get("count") == len(items) and meta.get("item_ids") == _ids_fingerprint(items)


# -- the two layouts -------------------------------------------------------------------------------
def _one_dimension(matrices: list[np.ndarray], key: str, what: str) -> None:
    dims = {m.shape[1] for m in matrices if m.shape[0]}
    if len(dims) > 1:
        raise VembedError(f"cache entry {key[:12]}: {what} dimension changed between shards "
                          f"({sorted(dims)}); re-run with --cache refresh")


def _encode_dense(compute: Callable[[Sequence[Item]], np.ndarray], chunk: Sequence[Item]) -> Arrays:
    rows = np.ascontiguousarray(compute(chunk), dtype=np.float32)
    if rows.ndim != 2 or rows.shape[0] != len(chunk):
        raise VembedError(f"encoder returned an array of shape {rows.shape} for {len(chunk)} items; "
                          "it must return one row per item")
    return {"npy": rows}


def _combine_dense(parts: list[Arrays], key: str) -> Arrays:
    shards = [p["npy"] for p in parts]
    _one_dimension(shards, key, "embedding")
    return {"embeddings.npy": np.concatenate(shards) if shards else np.zeros((0, 0), np.float32)}


def _check_dense(arrays: Arrays, count: int) -> str | None:
    rows = arrays["embeddings.npy"]
    if rows.ndim == 2 and rows.shape[0] == count:
        return None
    return f"embeddings.npy has shape {rows.shape} for {count} items"


def _check_dense_shard(parts: Arrays, count: int) -> str | None:
    rows = parts["npy"]
    if rows.ndim == 2 and rows.shape[0] == count:
        return None
    return f"shard has shape {rows.shape} for {count} items"


def _encode_multi(compute: Callable[[Sequence[Item]], Sequence[np.ndarray]],
                  chunk: Sequence[Item]) -> Arrays:
    flat, counts = _flatten(compute(chunk), len(chunk))
    return {"tokens.npy": flat, "lengths.npy": counts}


def _combine_multi(parts: list[Arrays], key: str) -> Arrays:
    tokens = [p["tokens.npy"] for p in parts]
    _one_dimension(tokens, key, "token")
    flat = np.concatenate(tokens) if tokens else np.zeros((0, 0), np.float32)
    counts = np.concatenate([p["lengths.npy"] for p in parts]) if parts else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return {"tokens.npy": flat, "offsets.npy": offsets}


def _check_multi(arrays: Arrays, count: int) -> str | None:
    tokens, offsets = arrays["tokens.npy"], arrays["offsets.npy"]
    if tokens.ndim != 2 or offsets.ndim != 1 or len(offsets) != count + 1:
        return f"tokens {tokens.shape} / offsets {offsets.shape} do not fit {count} items"
    if offsets[0] != 0 or offsets[-1] != tokens.shape[0] or np.any(np.diff(offsets) < 0):
        return "offsets.npy does not partition the token rows"
    return None


def _check_multi_shard(parts: Arrays, count: int) -> str | None:
    tokens, lengths = parts["tokens.npy"], parts["lengths.npy"]
    if tokens.ndim != 2 or lengths.shape != (count,) or np.any(lengths < 0) \
            or lengths.sum() != tokens.shape[0]:
        return f"shard tokens {tokens.shape} / lengths {lengths.shape} do not fit {count} items"
    return None


_DENSE = _Layout("dense", ("embeddings.npy",), True, ("npy",), _encode_dense, _combine_dense,
                 _check_dense, _check_dense_shard)
_MULTI = _Layout("multi", ("tokens.npy", "offsets.npy"), False, ("tokens.npy", "lengths.npy"), _encode_multi,
                 _combine_multi, _check_multi, _check_multi_shard)


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
