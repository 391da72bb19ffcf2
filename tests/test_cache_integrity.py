"""The embedding cache verifies what it reads, heals what is corrupt, and survives full disks.

Every corruption a user can produce (truncation, permuted rows, a flipped
byte, a file from another entry, a bad or missing meta, the old format, a bad
resume shard) must be reported in one warning naming the entry, re-encoded,
and give exactly what a fresh encode gives; the read after that is a clean
verified hit. Expected arrays come from calling the fake encoders directly,
never from the cache.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from vembed_bench import atomic
from vembed_bench.cache import CacheEntryError, EmbeddingCache, cache_key
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

ITEMS = [Item(id=f"i{n}", text=f"text {n}") for n in range(10)]
SHARD = 4  # shards [0:4], [4:8], [8:10]


def dense_vectors(items, seed: int = 0) -> np.ndarray:
    return np.stack([np.random.default_rng([seed, int(it.id[1:])]).standard_normal(6) for it in items]
                    ).astype(np.float32)


def token_matrices(items, seed: int = 0) -> list[np.ndarray]:
    # the "other model" (seed 1) gives other token counts, so its offsets differ too
    numbers = [int(it.id[1:]) for it in items]
    return [np.random.default_rng([seed, n]).standard_normal((1 + (n * n + seed) % 5, 5)).astype(np.float32)
            for n in numbers]


class Counting:
    """A fake encoder that records the items of every call; it can be told to fail."""

    def __init__(self, encode: Callable, seed: int = 0, interrupt_at: str | None = None,
                 forbid: bool = False) -> None:
        self.encode, self.seed, self.interrupt_at, self.forbid = encode, seed, interrupt_at, forbid
        self.calls: list[list[str]] = []

    def __call__(self, items):
        if self.forbid:
            raise AssertionError("compute was called for an entry that should be a hit")
        if self.interrupt_at is not None and items[0].id == self.interrupt_at:
            raise KeyboardInterrupt("simulated interruption")
        self.calls.append([it.id for it in items])
        return self.encode(items, self.seed)


class Kind:
    """One entry kind (single- or multi-vector) seen through the same small interface."""

    def __init__(self, name: str, encode: Callable, files: tuple[str, ...], shard_parts: tuple[str, ...]):
        self.name, self.encode, self.files, self.shard_parts = name, encode, files, shard_parts

    def get(self, cache: EmbeddingCache, key: str, compute: Counting):
        method = cache.get_or_compute_multi if self.name == "multi" else cache.get_or_compute
        return method(key, ITEMS, compute)

    def contains(self, cache: EmbeddingCache, key: str) -> bool:
        return cache.contains_multi(key) if self.name == "multi" else cache.contains(key)

    def load(self, cache: EmbeddingCache, key: str):
        return cache.load_multi(key) if self.name == "multi" else cache.load(key)

    def assert_fresh(self, got) -> None:
        """Bit for bit what a direct call of the encoder gives."""
        fresh = self.encode(ITEMS, 0)
        if self.name == "multi":
            assert len(got) == len(fresh)
            for g, f in zip(got, fresh):
                assert g.dtype == np.float32 and g.tobytes() == f.tobytes() and g.shape == f.shape
        else:
            assert got.dtype == np.float32 and got.shape == fresh.shape and got.tobytes() == fresh.tobytes()


DENSE = Kind("dense", dense_vectors, ("embeddings.npy",), ("npy",))
MULTI = Kind("multi", token_matrices, ("tokens.npy", "offsets.npy"), ("tokens.npy", "lengths.npy"))
KINDS = {"dense": DENSE, "multi": MULTI}


def entry_of(root: Path, key: str) -> Path:
    return root / key[:2] / key


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name == "vembed_bench.cache"]


def assert_one_warning(caplog, key: str, where: Path, reason: str) -> None:
    messages = cache_warnings(caplog)
    assert len(messages) == 1, messages
    assert key[:12] in messages[0] and str(where) in messages[0], messages[0]
    assert re.search(reason, messages[0]), messages[0]
    assert "\n" not in messages[0]


def names_of(corruptions) -> list[str]:
    return [change.__name__ for change, _ in corruptions]


# -- corruptions of a complete entry: (name, change(entry, other entry, data file), reason in the warning)
def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    path.write_bytes(change(path.read_bytes()))


def truncate_data(entry, other, name):
    _rewrite(entry / name, lambda b: b[:len(b) // 2])


def truncate_header(entry, other, name):
    _rewrite(entry / name, lambda b: b[:5])


def zero_length(entry, other, name):
    (entry / name).write_bytes(b"")


def permute_rows(entry, other, name):
    array = np.load(entry / name)
    np.save(entry / name, array[::-1].copy())  # same header, same size, rows reversed


def flip_data_byte(entry, other, name):
    _rewrite(entry / name, lambda b: b[:-3] + bytes([b[-3] ^ 0x01]) + b[-2:])


def flip_header_dtype(entry, other, name):
    _rewrite(entry / name, lambda b: b.replace(b"'<", b"'>", 1))  # little- to big-endian, same size


def wrong_dtype_file(entry, other, name):
    np.save(entry / name, np.load(entry / name).astype(np.float64))


def delete_data(entry, other, name):
    (entry / name).unlink()


def swap_file_from_other_entry(entry, other, name):
    shutil.copyfile(other / name, entry / name)


def swap_whole_entry(entry, other, name):
    for path in other.iterdir():
        shutil.copyfile(path, entry / path.name)


def delete_meta(entry, other, name):
    (entry / "meta.json").unlink()


def garble_meta(entry, other, name):
    (entry / "meta.json").write_text('{"format": 2, "key": ')


def old_format_meta(entry, other, name):
    (entry / "meta.json").write_text(json.dumps({"key": entry.name, "count": len(ITEMS)}))


def meta_without_record(entry, other, name):
    meta = json.loads((entry / "meta.json").read_text())
    del meta["files"][name]
    (entry / "meta.json").write_text(json.dumps(meta))


def meta_record_malformed(entry, other, name):
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"][name]["shape"] = "10 x 6"
    (entry / "meta.json").write_text(json.dumps(meta))


def meta_count_edited(entry, other, name):
    meta = json.loads((entry / "meta.json").read_text())
    meta["count"] -= 1
    (entry / "meta.json").write_text(json.dumps(meta))


ENTRY_CORRUPTIONS = [
    (truncate_data, r"bytes, expected"),
    (truncate_header, r"has 5 bytes, expected"),
    (zero_length, r"has 0 bytes, expected"),
    (permute_rows, r"checksum"),
    (flip_data_byte, r"checksum"),
    (flip_header_dtype, r"holds >|header"),
    (wrong_dtype_file, r"bytes, expected|holds <f8"),
    (delete_data, r"is missing"),
    (swap_file_from_other_entry, r"checksum|bytes, expected"),
    (swap_whole_entry, r"belongs to entry"),
    (delete_meta, r"meta.json is missing"),
    (garble_meta, r"meta.json is not valid JSON"),
    (old_format_meta, r"older cache format"),
    (meta_without_record, r"no checksum record"),
    (meta_record_malformed, r"record of \S+ is malformed"),
    (meta_count_edited, r"other items|for 9 items|do not fit 9 items"),
]
TARGETS = [("dense", "embeddings.npy"), ("multi", "tokens.npy"), ("multi", "offsets.npy")]


def _corrupted_entry(tmp_path: Path, kind: Kind, corrupt, name: str) -> str:
    key = cache_key("model", kind.name, {}, ITEMS)
    other = cache_key("other-model", kind.name, {}, ITEMS)
    kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, Counting(kind.encode))
    kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), other, Counting(kind.encode, seed=1))
    corrupt(entry_of(tmp_path, key), entry_of(tmp_path, other), name)
    return key


def _assert_next_read_is_a_clean_hit(tmp_path: Path, kind: Kind, key: str, caplog) -> None:
    caplog.clear()
    cache = EmbeddingCache(tmp_path, shard_size=SHARD)
    assert kind.contains(cache, key)
    kind.assert_fresh(kind.load(cache, key))
    kind.assert_fresh(kind.get(EmbeddingCache(tmp_path), key, Counting(kind.encode, forbid=True)))
    assert cache.hits == 1 and cache_warnings(caplog) == []
    assert sorted(p.name for p in entry_of(tmp_path, key).iterdir()) == sorted([*kind.files, "meta.json"])


@pytest.mark.parametrize("corrupt,reason", ENTRY_CORRUPTIONS, ids=names_of(ENTRY_CORRUPTIONS))
@pytest.mark.parametrize("kind_name,name", TARGETS, ids=[f"{k}-{n}" for k, n in TARGETS])
def test_corrupt_entry_is_reported_and_reencoded_by_get_or_compute(tmp_path, caplog, corrupt, reason,
                                                                   kind_name, name):
    kind = KINDS[kind_name]
    key = _corrupted_entry(tmp_path, kind, corrupt, name)
    caplog.clear()
    compute = Counting(kind.encode)
    cache = EmbeddingCache(tmp_path, shard_size=SHARD)
    got = kind.get(cache, key, compute)
    kind.assert_fresh(got)
    assert sum(map(len, compute.calls)) == len(ITEMS) and cache.misses == 1 and cache.hits == 0
    assert_one_warning(caplog, key, entry_of(tmp_path, key), reason)
    _assert_next_read_is_a_clean_hit(tmp_path, kind, key, caplog)


@pytest.mark.parametrize("corrupt,reason", ENTRY_CORRUPTIONS, ids=names_of(ENTRY_CORRUPTIONS))
@pytest.mark.parametrize("kind_name,name", TARGETS, ids=[f"{k}-{n}" for k, n in TARGETS])
def test_contains_is_false_for_a_corrupt_entry_which_is_then_reencoded(tmp_path, caplog, corrupt, reason,
                                                                      kind_name, name):
    """The pipeline's model-free path: contains() must say no, so the model is loaded and
    get_or_compute encodes; the warning is given once, by contains()."""
    kind = KINDS[kind_name]
    key = _corrupted_entry(tmp_path, kind, corrupt, name)
    caplog.clear()
    cache = EmbeddingCache(tmp_path, shard_size=SHARD)
    assert not kind.contains(cache, key)
    assert_one_warning(caplog, key, entry_of(tmp_path, key), reason)
    assert not kind.contains(cache, key)  # removed: now simply absent, no second warning
    compute = Counting(kind.encode)
    kind.assert_fresh(kind.get(cache, key, compute))
    assert sum(map(len, compute.calls)) == len(ITEMS) and len(cache_warnings(caplog)) == 1
    _assert_next_read_is_a_clean_hit(tmp_path, kind, key, caplog)


@pytest.mark.parametrize("kind_name", ["dense", "multi"])
def test_load_of_a_corrupt_entry_raises_a_catchable_error_and_removes_it(tmp_path, caplog, kind_name):
    kind = KINDS[kind_name]
    key = _corrupted_entry(tmp_path, kind, permute_rows, kind.files[0])
    caplog.clear()
    cache = EmbeddingCache(tmp_path, shard_size=SHARD)
    with pytest.raises(CacheEntryError, match=key[:12]) as err:
        kind.load(cache, key)
    assert isinstance(err.value, VembedError) and cache.hits == 0
    assert_one_warning(caplog, key, entry_of(tmp_path, key), "checksum")
    assert not (entry_of(tmp_path, key) / "meta.json").exists()
    with pytest.raises(CacheEntryError, match="missing"):
        kind.load(cache, key)


@pytest.mark.parametrize("kind_name", ["dense", "multi"])
def test_load_after_contains_returns_the_verified_array_even_if_the_file_changes_in_between(
        tmp_path, caplog, kind_name):
    """contains() keeps what it verified, so contains() -> load() cannot return bytes it did not check."""
    kind = KINDS[kind_name]
    key = cache_key("model", kind.name, {}, ITEMS)
    kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, Counting(kind.encode))
    cache = EmbeddingCache(tmp_path, shard_size=SHARD)
    assert kind.contains(cache, key)
    permute_rows(entry_of(tmp_path, key), None, kind.files[0])
    kind.assert_fresh(kind.load(cache, key))
    assert cache.hits == 1 and cache_warnings(caplog) == []
    assert not kind.contains(EmbeddingCache(tmp_path), key)  # a new reader does see the change
    assert_one_warning(caplog, key, entry_of(tmp_path, key), "checksum")


# -- corruptions of a resume shard (shard 1 of an interrupted encode) ---------------------------------
def shard_truncate(entry, part):
    _rewrite(entry / f"shard-000001.{part}", lambda b: b[:len(b) - 7])


def shard_flip_byte(entry, part):
    _rewrite(entry / f"shard-000001.{part}", lambda b: b[:-1] + bytes([b[-1] ^ 0x80]))


def shard_permute_rows(entry, part):
    path = entry / f"shard-000001.{part}"
    np.save(path, np.load(path)[::-1].copy())


def shard_zero_length(entry, part):
    (entry / f"shard-000001.{part}").write_bytes(b"")


def shard_swapped_with_shard_0(entry, part):
    shutil.copyfile(entry / f"shard-000000.{part}", entry / f"shard-000001.{part}")


def shard_sidecar_deleted(entry, part):
    (entry / "shard-000001.json").unlink()


def shard_sidecar_garbled(entry, part):
    (entry / "shard-000001.json").write_text("{]")


def shard_sidecar_of_shard_0(entry, part):
    shutil.copyfile(entry / "shard-000000.json", entry / "shard-000001.json")


SHARD_CORRUPTIONS = [
    (shard_truncate, r"bytes, expected"),
    (shard_flip_byte, r"checksum"),
    (shard_permute_rows, r"checksum"),
    (shard_zero_length, r"has 0 bytes"),
    (shard_swapped_with_shard_0, r"checksum|bytes, expected"),
    (shard_sidecar_deleted, r"shard-000001.json is missing"),
    (shard_sidecar_garbled, r"not valid JSON"),
    (shard_sidecar_of_shard_0, r"other items"),
]
SHARD_TARGETS = [("dense", "npy"), ("multi", "tokens.npy"), ("multi", "lengths.npy")]


@pytest.mark.parametrize("corrupt,reason", SHARD_CORRUPTIONS, ids=names_of(SHARD_CORRUPTIONS))
@pytest.mark.parametrize("kind_name,part", SHARD_TARGETS, ids=[f"{k}-{p}" for k, p in SHARD_TARGETS])
def test_a_bad_resume_shard_is_reported_and_reencoded_alone(tmp_path, caplog, corrupt, reason,
                                                            kind_name, part):
    kind = KINDS[kind_name]
    key = cache_key("model", kind.name, {}, ITEMS)
    with pytest.raises(KeyboardInterrupt):
        kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, Counting(kind.encode, interrupt_at="i8"))
    entry = entry_of(tmp_path, key)
    corrupt(entry, part)
    caplog.clear()
    compute = Counting(kind.encode)
    kind.assert_fresh(kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, compute))
    assert compute.calls == [["i4", "i5", "i6", "i7"], ["i8", "i9"]]  # shard 0 resumed, shard 1 re-encoded
    assert_one_warning(caplog, key, entry, reason)
    assert "shard 1" in cache_warnings(caplog)[0]
    _assert_next_read_is_a_clean_hit(tmp_path, kind, key, caplog)


@pytest.mark.parametrize("kind_name", ["dense", "multi"])
def test_good_resume_shards_are_reused_without_warning(tmp_path, caplog, kind_name):
    kind = KINDS[kind_name]
    key = cache_key("model", kind.name, {}, ITEMS)
    with pytest.raises(KeyboardInterrupt):
        kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, Counting(kind.encode, interrupt_at="i8"))
    caplog.clear()
    compute = Counting(kind.encode)
    kind.assert_fresh(kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, compute))
    assert compute.calls == [["i8", "i9"]] and cache_warnings(caplog) == []


def test_entry_of_the_other_kind_under_a_key_is_replaced_not_trusted(tmp_path, caplog):
    key = "ab" * 32
    DENSE.get(EmbeddingCache(tmp_path), key, Counting(DENSE.encode))
    cache = EmbeddingCache(tmp_path)
    assert not cache.contains_multi(key)
    compute = Counting(MULTI.encode)
    MULTI.assert_fresh(MULTI.get(cache, key, compute))
    assert compute.calls and cache_warnings(caplog) == []
    files = sorted(p.name for p in entry_of(tmp_path, key).iterdir())
    assert files == ["meta.json", "offsets.npy", "tokens.npy"]


# -- unwritable caches ----------------------------------------------------------------------------------
def test_check_writable_names_the_folder_and_the_reason(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache = EmbeddingCache(blocker / "embeddings")
    with pytest.raises(VembedError, match=re.escape(str(blocker / "embeddings")) + r".*[Nn]ot a directory"):
        cache.check_writable()
    EmbeddingCache(blocker / "embeddings", "off").check_writable()  # off writes nothing: nothing to check
    fine = EmbeddingCache(tmp_path / "ok" / "embeddings")
    fine.check_writable()
    assert list((tmp_path / "ok" / "embeddings").iterdir()) == []  # the probe file is gone


def test_unwritable_cache_fails_before_any_encoding(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    compute = Counting(dense_vectors)
    with pytest.raises(VembedError, match="not writable"):
        EmbeddingCache(blocker / "embeddings").get_or_compute("ab" * 32, ITEMS, compute)
    assert compute.calls == []


FAILING_WRITES = [  # (which file the full disk refuses, what the re-run must still encode)
    ("final", []),
    ("shard 1", [["i4", "i5", "i6", "i7"], ["i8", "i9"]]),
]


@pytest.mark.parametrize("fails,still_to_encode", FAILING_WRITES, ids=[f for f, _ in FAILING_WRITES])
@pytest.mark.parametrize("kind_name", ["dense", "multi"])
def test_disk_full_keeps_the_written_shards_for_the_rerun(tmp_path, monkeypatch, kind_name, fails,
                                                          still_to_encode):
    kind = KINDS[kind_name]
    key = cache_key("model", kind.name, {}, ITEMS)
    entry = entry_of(tmp_path, key)
    refused = entry / (kind.files[0] if fails == "final" else f"shard-000001.{kind.shard_parts[0]}")
    real_replace = os.replace

    def replace_refusing_one_file(src, dst):
        if Path(dst) == refused:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace_refusing_one_file)
    first = Counting(kind.encode)
    with pytest.raises(VembedError, match=re.escape(str(refused)) + ".*No space left on device"):
        kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, first)
    assert not list(tmp_path.rglob("*.tmp"))
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    rerun = Counting(kind.encode)
    kind.assert_fresh(kind.get(EmbeddingCache(tmp_path, shard_size=SHARD), key, rerun))
    assert rerun.calls == still_to_encode  # nothing that was stored is encoded again
    assert sorted(p.name for p in entry.iterdir()) == sorted([*kind.files, "meta.json"])


# -- encode manifests -------------------------------------------------------------------------------------
GOOD_MANIFEST = {"name": "m", "model_info": {"dim": 6}, "query_key": "ab" * 32, "document_key": "cd" * 32}


@pytest.mark.parametrize("text", [
    '{"name": "m", "model_info": ',  # cut short
    "\xff\xfe garbage",
    "[]",
    json.dumps({**GOOD_MANIFEST, "query_key": "../../../etc"}),
    json.dumps({key: value for key, value in GOOD_MANIFEST.items() if key != "document_key"}),
    json.dumps({**GOOD_MANIFEST, "key": "ab" * 32}),  # another key's manifest copied over this one
    json.dumps(GOOD_MANIFEST),  # written without its key: cannot be told from a copied one
])
def test_a_garbled_encode_manifest_is_treated_as_absent(tmp_path, text):
    cache = EmbeddingCache(tmp_path)
    cache.write_manifest("ef" * 32, GOOD_MANIFEST)
    assert cache.read_manifest("ef" * 32) == GOOD_MANIFEST
    (tmp_path / "manifests" / f"{'ef' * 32}.json").write_text(text, encoding="latin-1")
    assert cache.read_manifest("ef" * 32) is None


def test_an_unwritable_manifest_is_a_warning_not_a_failure(tmp_path, caplog):
    (tmp_path / "manifests").write_text("a file where the manifests folder should be")
    EmbeddingCache(tmp_path).write_manifest("ef" * 32, GOOD_MANIFEST)
    (message,) = cache_warnings(caplog)
    assert str(tmp_path / "manifests") in message and "loads the model" in message
