"""Several processes needing the same cache entry at once: all succeed with the same arrays.

Each worker is a separate interpreter (``spawn``), started together behind a
barrier, computing with a deterministic fake encoder that sleeps a little so
that the encodes overlap. Expected arrays come from calling the encoder directly.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest

from vembed_bench.cache import CachePolicy, EmbeddingCache, cache_key
from vembed_bench.cache_files import fcntl
from vembed_bench.data.types import Item

ITEMS = [Item(id=f"i{n}", text=f"text {n}") for n in range(12)]
SHARD = 4
WORKERS = 5


def dense_vectors(items) -> np.ndarray:
    time.sleep(0.05)
    rows = [np.random.default_rng(int(it.id[1:])).standard_normal(8) for it in items]
    return np.stack(rows).astype(np.float32)


def token_matrices(items) -> list[np.ndarray]:
    time.sleep(0.05)
    numbers = [int(it.id[1:]) for it in items]
    return [np.random.default_rng(n).standard_normal((1 + n % 3, 4)).astype(np.float32) for n in numbers]


class _WarningCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _worker(root: str, key: str, multi: bool, policy: str, barrier, results) -> None:
    """Compute (or load) the entry; report the result, the shards encoded and the warnings seen."""
    warnings = _WarningCounter()
    logging.getLogger("vembed_bench.cache").addHandler(warnings)
    encoded = []

    def compute(items):
        encoded.append(len(items))
        return (token_matrices if multi else dense_vectors)(items)

    cache = EmbeddingCache(Path(root), policy, shard_size=SHARD)
    barrier.wait()
    try:
        got = (cache.get_or_compute_multi if multi else cache.get_or_compute)(key, ITEMS, compute)
        results.put(("ok", got, len(encoded), warnings.count))
    except Exception as err:  # reported to the parent, which fails the test with it
        results.put(("error", repr(err), len(encoded), warnings.count))


def _reader(root: str, key: str, stop, barrier, results) -> None:
    """Read the entry with contains() -> load() until told to stop; report every mismatch."""
    warnings = _WarningCounter()
    logging.getLogger("vembed_bench.cache").addHandler(warnings)
    expected = dense_vectors(ITEMS)
    loads, wrong = 0, 0
    barrier.wait()
    while not stop.is_set():
        cache = EmbeddingCache(Path(root))
        if cache.contains(key):
            loads += 1
            wrong += not np.array_equal(cache.load(key), expected)
    results.put((loads, wrong, warnings.count))


def _collect(results, count: int) -> list:
    return [results.get(timeout=120) for _ in range(count)]


def _join(processes) -> None:
    for p in processes:
        p.join(timeout=60)
        assert p.exitcode == 0


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name.startswith(("shard-", ".")))


@pytest.mark.parametrize("multi", [False, True], ids=["dense", "multi"])
def test_processes_computing_the_same_entry_all_get_it_and_it_is_computed_once(tmp_path, multi):
    ctx = multiprocessing.get_context("spawn")
    key = cache_key("model", "document-multi" if multi else "document", {}, ITEMS)
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    processes = [ctx.Process(target=_worker, args=(str(tmp_path), key, multi, "use", barrier, results))
                 for _ in range(WORKERS)]
    for p in processes:
        p.start()
    got = _collect(results, WORKERS)
    _join(processes)
    assert [g[0] for g in got] == ["ok"] * WORKERS, [g[1] for g in got if g[0] != "ok"]
    assert sum(g[3] for g in got) == 0  # nobody saw a half-written entry as corrupt
    expected = token_matrices(ITEMS) if multi else dense_vectors(ITEMS)
    for _, arrays, _, _ in got:
        if multi:
            assert all(a.tobytes() == e.tobytes() and a.shape == e.shape for a, e in zip(arrays, expected))
        else:
            assert arrays.tobytes() == expected.tobytes()
    if fcntl is not None:  # with the entry lock the others wait, then load
        assert sorted(g[2] for g in got) == [0] * (WORKERS - 1) + [len(range(0, len(ITEMS), SHARD))]
    cache = EmbeddingCache(tmp_path)
    assert (cache.contains_multi if multi else cache.contains)(key)
    assert _leftovers(tmp_path) == []
    names = {"meta.json", "tokens.npy", "offsets.npy"} if multi else {"meta.json", "embeddings.npy"}
    assert {p.name for p in tmp_path.rglob("*") if p.is_file()} == names


def test_readers_never_see_a_wrong_array_while_writers_refresh(tmp_path):
    """Refreshing writers rewrite the entry while readers use the model-free path."""
    key = cache_key("model", "query", {}, ITEMS)
    EmbeddingCache(tmp_path, shard_size=SHARD).get_or_compute(key, ITEMS, dense_vectors)
    ctx = multiprocessing.get_context("spawn")
    writers, readers = 2, 3
    barrier, results, reads, stop = ctx.Barrier(writers + readers), ctx.Queue(), ctx.Queue(), ctx.Event()
    reader_processes = [ctx.Process(target=_reader, args=(str(tmp_path), key, stop, barrier, reads))
                        for _ in range(readers)]
    writer_processes = [ctx.Process(target=_worker, args=(str(tmp_path), key, False,
                                                          CachePolicy.REFRESH.value, barrier, results))
                        for _ in range(writers)]
    for p in reader_processes + writer_processes:
        p.start()
    written = _collect(results, writers)
    stop.set()
    seen = _collect(reads, readers)
    _join(reader_processes + writer_processes)
    assert [w[0] for w in written] == ["ok"] * writers, written
    assert all(wrong == 0 and warnings == 0 for _, wrong, warnings in seen), seen
    assert EmbeddingCache(tmp_path).contains(key) and _leftovers(tmp_path) == []
