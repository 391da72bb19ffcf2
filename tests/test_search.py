"""Search backends against an independent brute-force reference.

The reference scores every pair with one numpy matmul and orders each row with
``np.lexsort`` by (score descending, position ascending) -- the documented
contract. Tie-heavy data uses small integer vectors, whose dot products are
exact in float32 whatever the summation order, so every backend must return
*identical* scores and positions, ties included.
"""

from __future__ import annotations

import importlib.util
import tracemalloc

import numpy as np
import pytest

from vembed_bench.encoders.base import l2_normalize
from vembed_bench.errors import VembedError
from vembed_bench.search import SearchBackend, auto_choice, available_backends, resolve_backend, search
from vembed_bench.search import topk as tk

HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None

EXACT_BACKENDS = [
    "numpy",
    pytest.param("faiss", marks=pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")),
    pytest.param("torch:cpu", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")),
]


def reference(queries, corpus, k, exclude=None, candidates=None):
    """Brute force: full score matrix, masks, lexsort; pads with (-inf, -1)."""
    scores = queries.astype(np.float64) @ corpus.astype(np.float64).T  # exact for small ints
    n = corpus.shape[0]
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                scores[i, e] = -np.inf
    if candidates is not None:
        allowed = np.zeros_like(scores, dtype=bool)
        for i, c in enumerate(candidates):
            allowed[i, np.asarray(c, dtype=np.int64)] = True
        scores[~allowed] = -np.inf
    positions = np.broadcast_to(np.arange(n), scores.shape)
    order = np.lexsort((positions, -scores), axis=1)[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    out_i = np.full((queries.shape[0], k), -1, dtype=np.int64)
    out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
    width = order.shape[1]
    out_i[:, :width] = np.where(np.isfinite(top), order, -1)
    out_s[:, :width] = np.where(np.isfinite(top), top, -np.inf)
    return out_s, out_i


def tied_data(rng, n, nq, d):
    corpus = rng.integers(-2, 3, (n, d)).astype(np.float32)
    queries = rng.integers(-2, 3, (nq, d)).astype(np.float32)
    return queries, corpus


def assert_same(result, expected):
    exp_s, exp_i = expected
    np.testing.assert_array_equal(result.indices, exp_i)
    np.testing.assert_array_equal(result.scores, exp_s)
    assert result.scores.dtype == np.float32 and result.indices.dtype == np.int64


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_exact_backends_match_reference_with_ties(backend):
    rng = np.random.default_rng(0)
    cases = [(1, 1, 1, 1), (500, 40, 6, 7), (2500, 130, 4, 25), (3000, 70, 12, 150), (64, 1100, 3, 64)]
    for n, nq, d, k in cases:
        queries, corpus = tied_data(rng, n, nq, d)
        # A tiny memory budget forces many query and corpus blocks.
        for memory_mb in (1, 256):
            result = search(queries, corpus, k, backend=backend, memory_mb=memory_mb)
            assert_same(result, reference(queries, corpus, k))
            assert result.exact and result.index == "flat"


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_all_equal_scores_keep_lowest_positions(backend):
    corpus = np.ones((50, 4), dtype=np.float32)
    queries = np.ones((3, 4), dtype=np.float32)
    result = search(queries, corpus, 5, backend=backend)
    np.testing.assert_array_equal(result.indices, np.tile(np.arange(5), (3, 1)))
    np.testing.assert_array_equal(result.scores, np.full((3, 5), 4.0, dtype=np.float32))


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_continuous_data_matches_reference(backend):
    rng = np.random.default_rng(1)
    corpus = l2_normalize(rng.standard_normal((4000, 48)))
    queries = l2_normalize(rng.standard_normal((300, 48)))
    k = 20
    result = search(queries, corpus, k, backend=backend, memory_mb=1)
    exp_s, exp_i = reference(queries, corpus, k)
    np.testing.assert_allclose(result.scores, exp_s, atol=1e-5)
    # Returned scores are the scores of the returned rows, in order.
    true = np.einsum("qd,qkd->qk", queries.astype(np.float64), corpus[result.indices].astype(np.float64))
    np.testing.assert_allclose(result.scores, true, atol=1e-5)
    assert (np.diff(result.scores, axis=1) <= 0).all()
    # Positions agree wherever the reference has no near-tie around them.
    gaps = np.abs(np.diff(exp_s, axis=1))
    clear = np.ones_like(exp_i, dtype=bool)
    clear[:, :-1] &= gaps > 1e-5
    clear[:, 1:] &= gaps > 1e-5
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(result.indices[clear], exp_i[clear])


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_k_larger_than_corpus_pads(backend):
    rng = np.random.default_rng(2)
    queries, corpus = tied_data(rng, 7, 5, 3)
    result = search(queries, corpus, 12, backend=backend)
    assert result.indices.shape == (5, 12) and result.k == 12
    assert (result.indices[:, 7:] == -1).all() and np.isneginf(result.scores[:, 7:]).all()
    assert_same(result, reference(queries, corpus, 12))
    assert sorted(result.indices[0, :7]) == list(range(7))


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_exclude(backend):
    rng = np.random.default_rng(3)
    queries, corpus = tied_data(rng, 900, 120, 5)
    exclude = rng.integers(-1, 900, 120)
    exclude[:10] = -1
    for k in (1, 10, 899, 900):
        result = search(queries, corpus, k, backend=backend, exclude=exclude, memory_mb=1)
        assert_same(result, reference(queries, corpus, k, exclude=exclude))
        assert not (result.indices == exclude[:, None]).any()
    # Image-to-image: each query is in the corpus; it is dropped and k stay filled.
    corpus_n = l2_normalize(rng.standard_normal((300, 16)))
    result = search(corpus_n, corpus_n, 5, backend=backend, exclude=np.arange(300))
    assert (result.indices >= 0).all()
    assert not (result.indices == np.arange(300)[:, None]).any()
    plain = search(corpus_n, corpus_n, 6, backend=backend)
    np.testing.assert_array_equal(plain.indices[:, 0], np.arange(300))  # it would rank first
    np.testing.assert_array_equal(result.indices, plain.indices[:, 1:])


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_candidates(backend):
    rng = np.random.default_rng(4)
    queries, corpus = tied_data(rng, 400, 60, 4)
    candidates = [rng.choice(400, size=int(rng.integers(0, 120)), replace=True) for _ in range(60)]
    candidates[0] = np.array([], dtype=np.int64)
    candidates[1] = np.array([5, 5, 5])  # duplicates count once
    candidates[2] = list(range(400))
    exclude = np.full(60, -1)
    exclude[2] = 0
    for k in (1, 8, 150):
        for memory_mb in (1, 64):
            result = search(queries, corpus, k, backend=backend, candidates=candidates, exclude=exclude, memory_mb=memory_mb)
            assert_same(result, reference(queries, corpus, k, exclude=exclude, candidates=candidates))
    assert (result.indices[0] == -1).all()
    assert result.indices[1, 0] == 5 and (result.indices[1, 1:] == -1).all()
    for row, allowed in zip(result.indices, candidates):
        assert set(row[row >= 0]) <= set(np.asarray(allowed).tolist())


def test_backends_agree_with_each_other_on_ties():
    rng = np.random.default_rng(5)
    queries, corpus = tied_data(rng, 2000, 100, 3)  # very many exact ties
    names = ["numpy"] + (["faiss"] if HAS_FAISS else []) + (["torch:cpu"] if HAS_TORCH else [])
    results = [search(queries, corpus, 30, backend=name) for name in names]
    for other in results[1:]:
        np.testing.assert_array_equal(other.indices, results[0].indices)
        np.testing.assert_array_equal(other.scores, results[0].scores)


def test_sort_keys_order_like_python_tuples():
    rng = np.random.default_rng(6)
    specials = np.array([-np.inf, -1e30, -1.0, -1e-40, -0.0, 0.0, 1e-40, 0.5, 1.0, 3e38], dtype=np.float32)
    scores = np.concatenate([specials, rng.choice(specials, 200), rng.standard_normal(200).astype(np.float32)])
    positions = rng.permutation(len(scores)).astype(np.int64)
    keys = tk.pack_keys(scores, positions)
    expected = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), int(positions[i])))
    assert list(np.argsort(keys, kind="stable")) == expected
    back_s, back_i = tk.unpack_keys(keys)
    finite = np.isfinite(scores)
    np.testing.assert_array_equal(back_s[finite], scores[finite] + np.float32(0.0))
    np.testing.assert_array_equal(back_i[finite], positions[finite])


def test_numpy_search_memory_stays_bounded():
    rng = np.random.default_rng(7)
    corpus = rng.standard_normal((20000, 16)).astype(np.float32)
    queries = rng.standard_normal((2000, 16)).astype(np.float32)
    full_matrix = 2000 * 20000 * 4  # 160 MB
    tracemalloc.start()
    try:
        result = search(queries, corpus, 10, backend="numpy", memory_mb=8)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < full_matrix / 4, peak
    exp_s, _ = reference(queries[:50], corpus, 10)
    np.testing.assert_allclose(result.scores[:50], exp_s, atol=1e-4)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
@pytest.mark.parametrize(
    ("index", "options"),
    [
        ("hnsw", {}),
        ("ivf", {}),
        ("hnsw", {"ef_search": 100, "M": 16, "ef_construction": 20}),
        ("ivf", {"nprobe": 8}),
        ("IVF32,Flat", {"nprobe": 4}),
    ],
)
def test_approximate_indexes_have_good_recall(index, options):
    rng = np.random.default_rng(8)
    d, n, nq, k = 32, 3000, 150, 10
    centers = rng.standard_normal((40, d))
    corpus = l2_normalize(centers[rng.integers(0, 40, n)] + 0.35 * rng.standard_normal((n, d)))
    queries = l2_normalize(centers[rng.integers(0, 40, nq)] + 0.35 * rng.standard_normal((nq, d)))
    exact = reference(queries, corpus, k)[1]
    result = search(queries, corpus, k, backend="faiss", index=index, **options)
    assert result.exact is False and result.backend == "faiss"
    recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(result.indices, exact)])
    assert recall > 0.8, recall
    valid = result.indices >= 0
    true = np.einsum("qd,qkd->qk", queries, corpus[np.maximum(result.indices, 0)])
    np.testing.assert_allclose(result.scores[valid], true[valid], atol=1e-4)
    # exclude works for approximate searches too.
    ex = search(corpus[:50], corpus, k, backend="faiss", index=index, exclude=np.arange(50), **options)
    assert not (ex.indices == np.arange(50)[:, None]).any()


def test_unknown_or_unavailable_backend_is_a_one_line_error():
    for name in ("annoy", "", "numpy:cuda", "auto:cpu", "torch:tpu"):
        with pytest.raises(VembedError) as err:
            resolve_backend(name)
        assert "\n" not in str(err.value)
    with pytest.raises(VembedError, match="unknown search backend"):
        search(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 1, backend="annoy")


def test_bad_arguments_are_vembed_errors():
    q = np.ones((2, 4), np.float32)
    x = np.ones((5, 4), np.float32)
    bad_calls = [
        dict(queries=q, corpus=np.ones((5, 3), np.float32), k=1),
        dict(queries=q, corpus=x, k=0),
        dict(queries=q.ravel(), corpus=x, k=1),
        dict(queries=q * np.nan, corpus=x, k=1),
        dict(queries=q, corpus=x, k=1, exclude=np.array([0])),
        dict(queries=q, corpus=x, k=1, exclude=np.array([0, 5])),
        dict(queries=q, corpus=x, k=1, candidates=[np.array([1])]),
        dict(queries=q, corpus=x, k=1, candidates=[np.array([1]), np.array([9])]),
        dict(queries=q, corpus=x, k=1, index="hnsw", backend="numpy"),
        dict(queries=q, corpus=x, k=1, backend="numpy", nprobe=3),
        dict(queries=q, corpus=x, k=1, backend="numpy", memory_mb=0),
    ]
    if HAS_FAISS:
        bad_calls += [
            dict(queries=q, corpus=x, k=1, backend="faiss", index="hnsw", nprobe=3),
            dict(queries=q, corpus=x, k=1, backend="faiss", index="NotAnIndex"),
            dict(queries=q, corpus=x, k=1, backend="faiss", index="hnsw", candidates=[[0], [1]]),
        ]
    for kwargs in bad_calls:
        kwargs.setdefault("backend", "numpy")
        with pytest.raises(VembedError) as err:
            search(**kwargs)
        assert "\n" not in str(err.value), kwargs


def test_empty_inputs():
    x = np.ones((5, 4), np.float32)
    result = search(np.ones((0, 4), np.float32), x, 3, backend="numpy")
    assert result.indices.shape == (0, 3)
    result = search(np.ones((2, 4), np.float32), np.ones((0, 4), np.float32), 3, backend="numpy")
    assert (result.indices == -1).all()


def test_resolution_and_provenance():
    names = available_backends()
    assert names[-1] == "numpy"
    auto = resolve_backend("auto")
    assert isinstance(auto, SearchBackend)
    assert auto.name in names and auto.name == auto_choice().backend
    if HAS_FAISS:
        assert resolve_backend("auto", "hnsw").name == "faiss"
    for name in ["numpy"] + (["faiss"] if HAS_FAISS else []) + (["torch:cpu"] if HAS_TORCH else []):
        backend = resolve_backend(name)
        info = backend.describe()
        assert {"library", "device", "index", "exact"} <= set(info)
        assert info["library"].split()[0] in name
    if HAS_FAISS:
        info = resolve_backend("faiss").describe("hnsw")
        assert info["index"] == "hnsw" and info["exact"] is False and info["threads"] >= 1


@pytest.mark.skipif(not HAS_TORCH, reason="torch not installed")
def test_torch_without_cuda_needs_explicit_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(VembedError, match="torch:cpu"):
        resolve_backend("torch")
    assert "torch" not in available_backends()


@pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
def test_faiss_global_block_setting_is_restored():
    import faiss

    before = faiss.cvar.distance_compute_blas_database_bs
    rng = np.random.default_rng(9)
    queries, corpus = tied_data(rng, 300, 40, 4)
    search(queries, corpus, 3, backend="faiss")
    assert faiss.cvar.distance_compute_blas_database_bs == before
