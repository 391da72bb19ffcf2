"""Search over a corpus in blocks of rows (memory-mapped cache entries) gives the unblocked answer.

Data are small integers divided by 4: every dot product is exact in float32 whatever the
summation order, so blocked and unblocked searches (and the brute-force reference of
``test_search``) must agree bit for bit, ties included. Ties are planted across block
boundaries: rows duplicated just before and after each boundary, and far apart.
"""

from __future__ import annotations

import gc
import importlib.util
import re

import numpy as np
import pytest

from tests.test_search import reference
from vembed_bench.cache import EmbeddingCache, cache_key
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.search import blocked, numpy_backend, search
from vembed_bench.search import topk as tk

HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
BLOCKED_BACKENDS = [
    "numpy",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")),
]


def tied_across_blocks(rng, n: int, nq: int, d: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Quarter-integer vectors; each block boundary has a row equal to the one just before it,
    and every 5th row of the last block repeats a row of the first."""
    corpus = rng.integers(-3, 4, (n, d)).astype(np.float32) / 4
    for b in range(rows, n, rows):
        corpus[b] = corpus[b - 1]
    tail = np.arange(n - min(rows, n), n, 5)
    corpus[tail] = corpus[tail % min(rows, n)]
    queries = rng.integers(-3, 4, (nq, d)).astype(np.float32) / 4
    return queries, corpus


def assert_identical(got, expected) -> None:
    np.testing.assert_array_equal(got.indices, expected.indices)
    assert got.scores.dtype == np.float32
    np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("backend", BLOCKED_BACKENDS)
@pytest.mark.parametrize("rows", [1, 7, 64, 333])
def test_blocked_equals_unblocked_bit_for_bit(backend, rows):
    rng = np.random.default_rng(rows)
    n = 1000
    queries, corpus = tied_across_blocks(rng, n, 90, 5, rows)
    # k=1, k within a block, k larger than a block, k larger than the corpus
    for k in (1, 10, 150, n + 7):
        whole = search(queries, corpus, k, backend=backend)
        parts = search(queries, corpus, k, backend=backend, block_rows=rows)
        assert_identical(parts, whole)
        exp_s, exp_i = reference(queries, corpus, k)
        np.testing.assert_array_equal(parts.indices, exp_i)
        np.testing.assert_array_equal(parts.scores, exp_s)
        assert parts.info["corpus_blocks"] == -(-n // rows) and parts.info["block_rows"] == rows
        assert whole.info == {}  # in memory, searched whole: nothing to record


@pytest.mark.parametrize("backend", BLOCKED_BACKENDS)
def test_blocked_exclude_self_and_candidates(backend):
    rng = np.random.default_rng(11)
    rows = 50
    _, corpus = tied_across_blocks(rng, 400, 1, 4, rows)
    # Image-to-image: every corpus row queries the corpus without itself.
    exclude = np.arange(400)
    for k in (1, 5, 60, 400):
        parts = search(corpus, corpus, k, backend=backend, exclude=exclude, block_rows=rows)
        assert_identical(parts, search(corpus, corpus, k, backend=backend, exclude=exclude))
        exp_s, exp_i = reference(corpus, corpus, k, exclude=exclude)
        np.testing.assert_array_equal(parts.indices, exp_i)
        assert not (parts.indices == exclude[:, None]).any()
    # Per-query candidate lists that straddle blocks (some empty, duplicated, the whole corpus).
    queries = rng.integers(-3, 4, (40, 4)).astype(np.float32) / 4
    candidates = [rng.choice(400, size=int(rng.integers(0, 90)), replace=True) for _ in range(40)]
    candidates[0] = np.array([], dtype=np.int64)
    candidates[1] = np.array([49, 50, 50, 49])  # one on each side of a boundary, tied rows
    candidates[2] = np.arange(400)
    for k in (1, 8, 120):
        parts = search(queries, corpus, k, backend=backend, candidates=candidates, block_rows=rows)
        assert_identical(parts, search(queries, corpus, k, backend=backend, candidates=candidates))
        exp_s, exp_i = reference(queries, corpus, k, candidates=candidates)
        np.testing.assert_array_equal(parts.indices, exp_i)
        np.testing.assert_array_equal(parts.scores, exp_s)
    assert list(parts.indices[1, :2]) == [49, 50] and (parts.indices[1, 2:] == -1).all()


def test_the_block_search_never_gets_more_than_a_block(monkeypatch):
    """A spy on the per-block flat search: it sees at most ``block_rows`` rows, every row once."""
    seen: list[int] = []
    real = numpy_backend.exact_search_numpy

    def spy(q, x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(q, x, *args, **kwargs)

    monkeypatch.setattr(numpy_backend, "exact_search_numpy", spy)
    rng = np.random.default_rng(3)
    queries, corpus = tied_across_blocks(rng, 1000, 30, 4, 128)
    search(queries, corpus, 20, backend="numpy", block_rows=128)
    assert max(seen) <= 128 and sum(seen) == 1000 and len(seen) == 8
    seen.clear()
    search(queries, corpus, 20, backend="numpy")  # in memory, no block option: one search
    assert seen == [1000]


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_blocks_never_reach_knn_whole(monkeypatch):
    from vembed_bench.search.faiss_backend import FaissBackend

    seen: list[int] = []
    real = FaissBackend._knn

    def spy(self, q, x, *args, **kwargs):
        seen.append(x.shape[0])
        return real(self, q, x, *args, **kwargs)

    monkeypatch.setattr(FaissBackend, "_knn", spy)
    rng = np.random.default_rng(4)
    queries, corpus = tied_across_blocks(rng, 900, 30, 4, 100)
    search(queries, corpus, 15, backend="faiss", block_rows=100)
    assert max(seen) <= 100 and sum(seen) == 900


def _cached_corpus(tmp_path, corpus: np.ndarray, **cache_options) -> tuple[EmbeddingCache, str]:
    items = [Item(id=f"d{i}", text=str(i)) for i in range(len(corpus))]
    store = EmbeddingCache(tmp_path / "cache", shard_size=256, **cache_options)
    key = cache_key("model", "document", {}, items)
    store.get_or_compute(key, items, lambda chunk: corpus[int(chunk[0].id[1:]): int(chunk[0].id[1:]) + len(chunk)])
    return store, key


def test_cache_entry_memory_mapped_after_streamed_verification(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    _, corpus = tied_across_blocks(rng, 1000, 1, 8, 100)
    store, key = _cached_corpus(tmp_path, corpus)
    from vembed_bench import cache_files

    monkeypatch.setattr(cache_files, "HASH_CHUNK_BYTES", 4096)  # many chunks for a 32 kB file

    def whole_file_read(*args, **kwargs):
        raise AssertionError("a memory-mapped entry must not be read whole to be verified")

    monkeypatch.setattr(cache_files, "_read_all", whole_file_read)
    mapped = store.load(key, mmap=True)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, corpus)
    assert blocked.is_memory_mapped(mapped)
    monkeypatch.undo()
    in_memory = store.load(key, mmap=False)
    assert not isinstance(in_memory, np.memmap) and not blocked.is_memory_mapped(in_memory)
    np.testing.assert_array_equal(in_memory, corpus)
    # Small entries stay in memory by default (small tasks unchanged); the threshold maps large ones.
    assert not isinstance(store.load(key), np.memmap)
    small_threshold = EmbeddingCache(tmp_path / "cache", shard_size=256, mmap_min_bytes=1024)
    assert isinstance(small_threshold.load(key), np.memmap)
    assert small_threshold.contains(key) and isinstance(small_threshold.load(key), np.memmap)


def test_memory_mapped_entry_with_a_flipped_byte_is_refused(tmp_path):
    rng = np.random.default_rng(6)
    _, corpus = tied_across_blocks(rng, 600, 1, 8, 100)
    store, key = _cached_corpus(tmp_path, corpus)
    path = next((tmp_path / "cache").rglob("embeddings.npy"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    fresh = EmbeddingCache(tmp_path / "cache", shard_size=256, mmap_min_bytes=1)
    assert not fresh.contains(key)  # the bad bytes are caught by the streamed hash; entry removed
    with pytest.raises(VembedError, match="missing or failed verification"):
        fresh.load(key, mmap=True)


@pytest.mark.parametrize("backend", BLOCKED_BACKENDS)
def test_memory_mapped_corpus_is_searched_in_blocks_automatically(tmp_path, backend, monkeypatch):
    rng = np.random.default_rng(7)
    rows_in_a_mb = 2**20 // (4 * 64)
    queries, corpus = tied_across_blocks(rng, 3 * rows_in_a_mb + 100, 40, 64, rows_in_a_mb)
    store, key = _cached_corpus(tmp_path, corpus)
    mapped = store.load(key, mmap=True)
    released: list[tuple[int, int]] = []
    real_release = blocked.release_rows

    def spy_release(array, start, stop):
        released.append((start, stop))
        real_release(array, start, stop)

    monkeypatch.setattr(blocked, "release_rows", spy_release)
    exclude = np.arange(40) * 7
    parts = search(queries, mapped, 25, backend=backend, exclude=exclude, block_mb=1)
    assert parts.info == {"corpus_blocks": 4, "block_rows": rows_in_a_mb, "memory_mapped": True}
    assert released == [(0, rows_in_a_mb), (rows_in_a_mb, 2 * rows_in_a_mb),
                        (2 * rows_in_a_mb, 3 * rows_in_a_mb), (3 * rows_in_a_mb, len(corpus))]
    assert_identical(parts, search(queries, corpus, 25, backend=backend, exclude=exclude))
    again = search(queries, mapped, 25, backend=backend, exclude=exclude, block_mb=1)
    assert_identical(again, parts)  # released pages read back the same bytes
    whole = search(queries, mapped, 25, backend=backend, exclude=exclude, block_mb=64)
    assert whole.info == {"memory_mapped": True}  # fits in one block: searched whole
    assert_identical(whole, parts)


def test_nan_in_a_later_block_is_a_one_line_error():
    corpus = np.ones((300, 4), dtype=np.float32)
    corpus[250, 2] = np.nan
    with pytest.raises(VembedError) as err:
        search(np.ones((2, 4), np.float32), corpus, 3, backend="numpy", block_rows=100)
    assert "NaN" in str(err.value) and "\n" not in str(err.value)
    for bad in ({"block_rows": 0}, {"block_mb": -1}, {"block_rows": 1.5}):
        with pytest.raises(VembedError, match="block_"):
            search(np.ones((2, 4), np.float32), np.ones((300, 4), np.float32), 3, backend="numpy", **bad)


def test_merge_keeps_the_lower_position_among_equal_scores():
    """The merge alone: two blocks with the same scores; positions of the first block win."""
    running = np.full((1, 3), tk.PAD, dtype=np.uint64)
    scores = np.array([[0.5, 0.5, 0.25]], dtype=np.float32)
    blocked.merge_block(running, scores, np.array([[2, 0, 1]]), 10, 3)  # rows 12, 10, 11
    blocked.merge_block(running, scores, np.array([[1, 0, -1]]), 0, 3)  # rows 1, 0 (and none)
    got_s, got_i = tk.unpack_keys(np.sort(running, axis=1))
    assert got_i.tolist() == [[0, 1, 10]] and got_s.tolist() == [[0.5, 0.5, 0.5]]


# -- GPU paths that cannot run here: their CPU fallbacks and the logic they share -----------------


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_without_gpu_support_falls_back_to_the_cpu(monkeypatch):
    """faiss-cpu claiming GPUs (a broken or foreign build) must not take the GPU or sharding path."""
    import faiss

    from vembed_bench.search.faiss_backend import FaissBackend, can_shard, gpu_support, num_gpus

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    assert not gpu_support(faiss) and num_gpus() == 0 and not can_shard(faiss, num_gpus())
    backend = FaissBackend.create(None)
    assert backend.gpus == 0 and backend.describe()["device"] == "cpu"
    rng = np.random.default_rng(8)
    queries, corpus = tied_across_blocks(rng, 500, 30, 4, 100)
    result = backend.search(queries, corpus, 10, block_rows=100)
    exp_s, exp_i = reference(queries, corpus, 10)
    np.testing.assert_array_equal(result.indices, exp_i)
    assert "gpu_sharded" not in result.info and result.exact
    for device, option in (("gpu", {}), (None, {"float16": True})):
        with pytest.raises(VembedError) as err:
            FaissBackend.create(device).search(queries, corpus, 3, **option)
        assert "\n" not in str(err.value) and re.search("gpu|GPU", str(err.value))


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
@pytest.mark.parametrize("rows", [1, 33, 250])
def test_torch_streamed_blocks_equal_the_reference(rows):
    rng = np.random.default_rng(rows)
    queries, corpus = tied_across_blocks(rng, 500, 70, 4, rows)
    exclude = rng.integers(-1, 500, 70)
    for k in (1, 12, 40, 520):
        got = search(queries, corpus, k, backend="torch:cpu", exclude=exclude, block_rows=rows, query_block=32)
        exp_s, exp_i = reference(queries, corpus, k, exclude=exclude)
        np.testing.assert_array_equal(got.indices, exp_i)
        np.testing.assert_array_equal(got.scores, exp_s)
        assert got.info["corpus_on_device"] == "streamed in blocks"


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_streams_a_corpus_that_does_not_fit(monkeypatch):
    from vembed_bench.search import resolve_backend
    from vembed_bench.search.torch_backend import TorchBackend

    backend = resolve_backend("torch:cpu")
    monkeypatch.setattr(TorchBackend, "_fits", lambda self, nbytes: False)
    backend.release()
    backend.uploads = 0
    rng = np.random.default_rng(9)
    queries, corpus = tied_across_blocks(rng, 3000, 300, 4, 700)
    got = backend.search(queries, corpus, 30, memory_mb=1, query_block=256)  # 1 MiB / (4 * 256) rows
    assert got.info["corpus_on_device"] == "streamed in blocks" and got.info["corpus_blocks"] == 3
    assert backend.uploads == 0
    exp_s, exp_i = reference(queries, corpus, 30)
    np.testing.assert_array_equal(got.indices, exp_i)
    np.testing.assert_array_equal(got.scores, exp_s)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_keeps_a_read_only_or_prepared_corpus_between_calls(monkeypatch):
    """The keep-or-upload logic of a GPU, run on the CPU: the upload is made a real copy (as a
    device copy is), which the CPU path otherwise skips since its tensor is the array itself."""
    import torch

    from vembed_bench.search import resolve_backend
    from vembed_bench.search.torch_backend import TorchBackend

    def copying_upload(self, x):
        self.uploads += 1
        return torch.from_numpy(np.array(x))

    monkeypatch.setattr(TorchBackend, "_copies_to_device", True)
    monkeypatch.setattr(TorchBackend, "_upload", copying_upload)
    backend = resolve_backend("torch:cpu")
    backend.release()
    rng = np.random.default_rng(10)
    queries, corpus = tied_across_blocks(rng, 400, 20, 4, 100)
    expected = search(queries, corpus, 5, backend="numpy")

    def uploads_for_two_searches(array) -> int:
        before = backend.uploads
        for _ in range(2):
            assert_identical(backend.search(queries, array, 5), expected)
        return backend.uploads - before

    writable = corpus.copy()
    assert uploads_for_two_searches(writable) == 2  # it might change between calls: never kept
    read_only = corpus.copy()
    read_only.flags.writeable = False
    assert uploads_for_two_searches(read_only) == 1
    assert backend.search(queries, read_only, 5).info["corpus_on_device"] == "kept from an earlier call"
    del read_only
    gc.collect()
    assert backend._resident is None  # the array is gone: so is its device copy
    assert backend.prepare(writable) is True
    assert uploads_for_two_searches(writable) == 0  # uploaded once, by prepare
    backend.release()
    assert uploads_for_two_searches(writable) == 2
    with pytest.raises(VembedError, match="prepare"):
        backend.prepare(corpus.astype(np.float64))


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize("index", ["IVF16,Flat", "ivf", "BFlat"])
def test_an_index_built_block_by_block_from_a_mapped_corpus_is_the_same_index(tmp_path, index, monkeypatch):
    rng = np.random.default_rng(12)
    rows_in_a_mb = 2**20 // (4 * 64)
    corpus = rng.standard_normal((3 * rows_in_a_mb + 50, 64)).astype(np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[:30] + 0.05 * rng.standard_normal((30, 64)).astype(np.float32)
    store, key = _cached_corpus(tmp_path, corpus)
    mapped = store.load(key, mmap=True)
    added: list[int] = []
    from vembed_bench.search import faiss_backend

    real_release = faiss_backend.release_rows
    monkeypatch.setattr(faiss_backend, "release_rows",
                        lambda array, start, stop: (added.append(min(stop, len(array)) - start),
                                                    real_release(array, start, stop)))
    from_file = search(queries, mapped, 10, backend="faiss", index=index, block_mb=1, exclude=np.arange(30))
    assert added[:4] == [rows_in_a_mb] * 3 + [50]  # added in four blocks, each released
    in_memory = search(queries, corpus, 10, backend="faiss", index=index, exclude=np.arange(30))
    assert_identical(from_file, in_memory)
    assert not from_file.exact and not (from_file.indices == np.arange(30)[:, None]).any()


def test_the_evaluation_searches_cached_large_matrices_memory_mapped(tmp_path, monkeypatch):
    """A cache hit on an entry above the threshold is searched memory-mapped, with the scores of
    the first (in-memory) run; below the threshold nothing changes (small tasks)."""
    import functools

    from tests.conftest import write_beir
    from tests.test_matryoshka import FixedEncoder
    from vembed_bench.evaluation import evaluate, stages

    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(300)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(40)]
    task = write_beir(tmp_path / "t", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(40)]})
    run = functools.partial(evaluate, task, FixedEncoder(), cache_dir=tmp_path / "cache", results_dir=None,
                            show_progress=False, backend="numpy")
    first = run()
    assert first.cache["misses"] == 2 and "memory_mapped" not in first.search_info
    assert "memory_mapped" not in run().search_info  # a hit, but small: read into memory as before
    monkeypatch.setattr(stages, "EmbeddingCache", functools.partial(EmbeddingCache, mmap_min_bytes=1024))
    mapped = run()
    assert mapped.cache["hits"] == 2 and mapped.search_info["memory_mapped"] is True
    assert mapped.scores == first.scores
    for name, values in first.per_query.per_query.items():
        np.testing.assert_array_equal(mapped.per_query.per_query[name], values)


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_searches_a_mapped_corpus_and_checks_it_block_by_block(tmp_path):
    rng = np.random.default_rng(13)
    queries, corpus = tied_across_blocks(rng, 2000, 30, 8, 300)
    store, key = _cached_corpus(tmp_path, corpus)
    mapped = store.load(key, mmap=True)
    for options in ({}, {"block_rows": 300}):
        got = search(queries, mapped, 12, backend="torch:cpu", **options)
        assert got.info["memory_mapped"] is True
        assert_identical(got, search(queries, corpus, 12, backend="numpy"))
    bad = corpus.copy()
    bad[1500, 3] = np.inf
    store_bad, key_bad = _cached_corpus(tmp_path / "bad", bad)
    with pytest.raises(VembedError, match="NaN or infinite"):
        search(queries, store_bad.load(key_bad, mmap=True), 3, backend="torch:cpu")
