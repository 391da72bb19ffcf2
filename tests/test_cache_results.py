"""Embedding cache (reuse, resume after interruption, policies) and atomic result files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from vembed_bench import atomic
from vembed_bench.atomic import write_json
from vembed_bench.cache import CachePolicy, EmbeddingCache, cache_key
from vembed_bench.data.types import Item

ITEMS = [Item(id=f"i{n}", text=f"text {n}") for n in range(10)]


class CountingEncoder:
    """Deterministic fake embeddings; counts how many items it was asked to encode."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.encoded = 0
        self.fail_after = fail_after

    def __call__(self, items):
        if self.fail_after is not None and self.encoded + len(items) > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.encoded += len(items)
        return np.array([[int(it.id[1:]), 1.0] for it in items], dtype=np.float32)


def test_second_run_is_a_hit(tmp_path):
    key = cache_key("model", "query", {}, ITEMS)
    first, second = CountingEncoder(), CountingEncoder()
    a = EmbeddingCache(tmp_path, shard_size=4).get_or_compute(key, ITEMS, first)
    cache = EmbeddingCache(tmp_path, shard_size=4)
    b = cache.get_or_compute(key, ITEMS, second)
    assert first.encoded == 10 and second.encoded == 0 and cache.hits == 1
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[:, 0], np.arange(10))


def test_interrupted_encode_resumes_from_written_shards(tmp_path):
    key = cache_key("model", "document", {}, ITEMS)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache(tmp_path, shard_size=4).get_or_compute(key, ITEMS, CountingEncoder(fail_after=9))
    resumed = CountingEncoder()
    out = EmbeddingCache(tmp_path, shard_size=4).get_or_compute(key, ITEMS, resumed)
    assert resumed.encoded == 2  # shards [0:4] and [4:8] were on disk; only [8:10] is encoded
    np.testing.assert_array_equal(out[:, 0], np.arange(10))
    assert not list(tmp_path.rglob("shard-*.npy")) and not list(tmp_path.rglob("*.tmp"))


def test_refresh_and_off_policies(tmp_path):
    key = cache_key("model", "query", {}, ITEMS)
    EmbeddingCache(tmp_path).get_or_compute(key, ITEMS, CountingEncoder())
    refresh = CountingEncoder()
    EmbeddingCache(tmp_path, CachePolicy.REFRESH).get_or_compute(key, ITEMS, refresh)
    assert refresh.encoded == 10
    off_dir = tmp_path / "off"
    off = CountingEncoder()
    EmbeddingCache(off_dir, "off").get_or_compute(key, ITEMS, off)
    assert off.encoded == 10 and not off_dir.exists()


def test_key_changes_with_everything_that_changes_vectors():
    base = cache_key("m", "query", {"prompt": "q: "}, ITEMS)
    assert base == cache_key("m", "query", {"prompt": "q: "}, list(ITEMS))
    assert base != cache_key("m2", "query", {"prompt": "q: "}, ITEMS)
    assert base != cache_key("m", "document", {"prompt": "q: "}, ITEMS)
    assert base != cache_key("m", "query", {"prompt": "query: "}, ITEMS)
    assert base != cache_key("m", "query", {"prompt": "q: "}, ITEMS[:-1] + [Item(id="i9", text="changed")])


def test_atomic_write_keeps_old_file_when_serialisation_fails(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_flushes_the_folder_and_keeps_the_open_mode(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    write_json(tmp_path / "r.json", {"ok": 1})
    assert synced == [False, True]  # the file, then the folder holding the new name
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o666 & ~umask


def test_atomic_write_succeeds_where_a_folder_cannot_be_synced(tmp_path, monkeypatch):
    real_open = os.open

    def no_folder_open(path, flags, *args, **kwargs):
        if Path(path).is_dir():
            raise PermissionError(13, "folders cannot be opened here")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic.os, "open", no_folder_open)
    write_json(tmp_path / "r.json", {"ok": 2})
    assert json.loads((tmp_path / "r.json").read_text()) == {"ok": 2}
