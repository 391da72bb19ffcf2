"""The sort-key primitives of vembed_bench.search.topk, one function at a time.

The backends' end-to-end tests (tests/test_search.py) compare whole searches with a brute-force
reference; these check each primitive directly against plain numpy (``np.lexsort``, ``np.sort``,
``np.unique``, a dense score matrix), so a wrong key, pad or batch is caught where it is made.
"""

from __future__ import annotations

import numpy as np
import pytest

from vembed_bench.search import topk as tk

PAD = np.iinfo(np.uint64).max
SPECIALS = np.array([np.inf, 3e38, 1.0, 0.5, 1e-40, 0.0, -0.0, -1e-40, -1.0, -3e38], dtype=np.float32)


def lexsort_topk(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: per row, order by score descending then position ascending; -inf is absent."""
    out_s = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((scores.shape[0], k), -1, dtype=np.int64)
    for r in range(scores.shape[0]):
        order = np.lexsort((positions[r], -scores[r].astype(np.float64)))
        order = [j for j in order if scores[r, j] != -np.inf][:k]
        out_s[r, : len(order)] = scores[r, order]
        out_i[r, : len(order)] = positions[r, order]
    return out_s, out_i


def test_flip_is_self_inverse_and_orders_floats_descending():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 10_000, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(tk._flip(tk._flip(bits)), bits)
    descending = SPECIALS[SPECIALS != 0]
    flipped = tk._flip(np.append(descending, np.float32(0.0)).view(np.uint32)).astype(np.int64)
    assert (np.diff(flipped[:-1]) > 0).all()  # larger score, smaller key
    assert flipped[4] < flipped[-1] < flipped[5]  # 0.0 between 1e-40 and -1e-40
    # Exact values: +1.0 (0x3F800000) keeps its sign bit and flips the rest; -1.0 is unchanged.
    assert tk._flip(np.array([0x3F800000], dtype=np.uint32))[0] == 0x407FFFFF
    assert tk._flip(np.array([0xBF800000], dtype=np.uint32))[0] == 0xBF800000


def test_pack_keys_layout():
    keys = tk.pack_keys(np.array([1.0, -1.0, -0.0], dtype=np.float32), np.array([7, 2**32 - 2, 3]))
    assert keys.dtype == np.uint64
    assert keys.tolist() == [(0x407FFFFF << 32) | 7, (0xBF800000 << 32) | (2**32 - 2), (0x7FFFFFFF << 32) | 3]


def test_pack_keys_converts_scores_to_float32_first():
    # float64 scores or a plain list key like their float32 values (a float64 bit view would
    # double the width and mix halves of two numbers).
    positions = np.array([0, 1, 2])
    expected = tk.pack_keys(np.array([0.5, -2.0, 1e-3], dtype=np.float32), positions)
    np.testing.assert_array_equal(tk.pack_keys(np.array([0.5, -2.0, 1e-3]), positions), expected)
    np.testing.assert_array_equal(tk.pack_keys([0.5, -2.0, 1e-3], positions), expected)


def test_pack_then_unpack_gives_back_scores_and_positions():
    rng = np.random.default_rng(1)
    scores = np.concatenate([SPECIALS, rng.standard_normal(500).astype(np.float32)]).reshape(10, -1)
    positions = rng.integers(0, 2**32 - 1, scores.shape, dtype=np.int64)
    back_s, back_i = tk.unpack_keys(tk.pack_keys(scores, positions))
    assert back_s.dtype == np.float32 and back_i.dtype == np.int64
    np.testing.assert_array_equal(back_s, scores + np.float32(0.0))
    assert not np.signbit(back_s[scores == 0]).any()  # -0.0 comes back as +0.0
    np.testing.assert_array_equal(back_i, positions)
    np.testing.assert_array_equal(tk.key_scores(tk.pack_keys(scores, positions)), back_s)


def test_keys_that_lost_their_dtype_decode_the_same():
    # Keys that went through tolist() (or JSON) come back as Python ints, int64 when they fit.
    keys = tk.pack_keys(np.array([[0.5, 2.0, 7.25]], dtype=np.float32), np.array([[1, 2, 3]]))
    scores, positions = tk.unpack_keys(keys.tolist())
    assert scores.tolist() == [[0.5, 2.0, 7.25]] and positions.tolist() == [[1, 2, 3]]
    assert tk.key_scores(keys.tolist()).tolist() == [[0.5, 2.0, 7.25]]


def test_pad_and_minus_inf_unpack_as_empty_slots():
    keys = np.concatenate([np.array([PAD], dtype=np.uint64),
                           tk.pack_keys(np.array([-np.inf, 2.0], dtype=np.float32), np.array([5, 9]))])[None, :]
    scores, positions = tk.unpack_keys(keys)
    assert scores.tolist() == [[-np.inf, -np.inf, 2.0]] and positions.tolist() == [[-1, -1, 9]]
    assert tk.key_scores(keys).tolist() == [[-np.inf, -np.inf, 2.0]]
    assert tk.key_scores(keys).dtype == np.float32
    assert tk.PAD == PAD


@pytest.mark.parametrize("width", [1, 5, 8, 9, 20])
@pytest.mark.parametrize("sort", [True, False])
def test_smallest_keys_is_the_sorted_head_padded_with_pad(width, sort):
    rng = np.random.default_rng(width)
    keys = rng.choice(2**40, (6, width), replace=False).astype(np.uint64)
    top = tk.smallest_keys(keys, 8, sort=sort)
    expected = np.full((6, 8), PAD, dtype=np.uint64)
    head = np.sort(keys, axis=1)[:, :8]
    expected[:, : head.shape[1]] = head
    assert top.shape == (6, 8) and top.dtype == np.uint64
    if sort:
        np.testing.assert_array_equal(top, expected)
        np.testing.assert_array_equal(tk.smallest_keys(keys, 8), expected)  # sorted by default
    else:
        np.testing.assert_array_equal(np.sort(top, axis=1), expected)


def test_worst_kept_score_is_the_kth_best_score_or_minus_inf():
    running = np.array([
        tk.pack_keys(np.array([3.0, 1.0, 2.0], dtype=np.float32), np.array([0, 1, 2])),
        np.concatenate([tk.pack_keys(np.array([5.0, 4.0], dtype=np.float32), np.array([0, 1])),
                        np.array([PAD], dtype=np.uint64)]),
    ])
    assert tk.worst_kept_score(running).tolist() == [1.0, -np.inf]


def test_topk_dense_and_topk_from_keys_match_lexsort():
    rng = np.random.default_rng(2)
    scores = rng.integers(-3, 4, (7, 40)).astype(np.float32)  # many ties
    scores[0, :] = -np.inf  # nothing to return
    scores[1, 5:] = -np.inf  # fewer than k
    columns = rng.permutation(1000)[:40]
    for k in (1, 10, 40, 50):
        got_s, got_i = tk.topk_from_keys(tk.topk_dense(scores, columns, k))
        exp_s, exp_i = lexsort_topk(scores, np.broadcast_to(columns, scores.shape), k)
        np.testing.assert_array_equal(got_i, exp_i)
        np.testing.assert_array_equal(got_s, exp_s)


def _check_batches(candidates, dim, budget):
    batches = list(tk.candidate_batches(candidates, dim, budget))
    seen = np.concatenate([rows for rows, _, _ in batches]) if batches else np.array([], dtype=np.int64)
    nonempty = [i for i, c in enumerate(candidates) if len(c)]
    assert sorted(seen.tolist()) == nonempty  # every query with candidates exactly once
    lengths = [len(candidates[i]) for i in seen]
    assert lengths == sorted(lengths)  # visited by increasing length
    for rows, positions, valid in batches:
        width = max(len(candidates[i]) for i in rows)
        assert positions.shape == valid.shape == (len(rows), width) and positions.dtype == np.int64
        for r, q in enumerate(rows):
            n = len(candidates[q])
            assert valid[r].tolist() == [True] * n + [False] * (width - n)
            np.testing.assert_array_equal(positions[r, :n], candidates[q])
            assert (positions[r, n:] == 0).all()
        if len(rows) > 1:
            assert len(rows) * width * (4 * dim + 32) <= budget
    return batches


def test_candidate_batches_cover_every_query_within_the_budget():
    rng = np.random.default_rng(3)
    candidates = [rng.choice(500, int(n), replace=False) for n in rng.integers(0, 60, 40)]
    candidates[3] = np.array([], dtype=np.int64)
    dim = 8
    row_bytes = 4 * dim + 32
    # A budget of exactly 3 rows of the longest list: batches are as full as the budget allows.
    batches = _check_batches(candidates, dim, 3 * 59 * row_bytes)
    assert max(len(rows) for rows, _, _ in batches) >= 3
    assert len(_check_batches(candidates, dim, 10**12)) == 1  # everything fits in one batch
    tiny = _check_batches(candidates, dim, 1)  # one query per batch, even over the budget
    assert all(len(rows) == 1 for rows, _, _ in tiny)
    assert list(tk.candidate_batches([np.array([], dtype=np.int64)] * 3, dim, 10**6)) == []


def test_candidate_batch_boundary_is_inclusive():
    candidates = [np.arange(10), np.arange(10), np.arange(10)]
    row_bytes = 4 * 4 + 32
    (rows, _, _), = tk.candidate_batches(candidates, 4, 3 * 10 * row_bytes)  # exactly fits: one batch
    assert rows.tolist() == [0, 1, 2]
    sizes = [len(r) for r, _, _ in tk.candidate_batches(candidates, 4, 3 * 10 * row_bytes - 1)]
    assert sizes == [2, 1]
    # Later batches count their own rows (from their start), not the rows before them.
    four = [np.arange(10)] * 4
    assert [len(r) for r, _, _ in tk.candidate_batches(four, 4, 2 * 10 * row_bytes)] == [2, 2]


def test_union_matmul_decision_and_inverse():
    positions = np.array([[4, 2, 9, 0], [2, 2, 4, 0]])
    valid = np.array([[True, True, True, False], [True, True, True, False]])
    wins, union, inverse = tk.use_union_matmul(positions, valid)
    assert union.tolist() == [2, 4, 9]
    np.testing.assert_array_equal(union[inverse], positions[valid])
    assert wins  # 2 rows x 3 distinct = 6 <= 8 x 6 gathered pairs
    # The exact boundary: rows x |union| == FACTOR x pairs still wins; one more row loses.
    assert tk.UNION_MATMUL_FACTOR == 8
    eight, nine = np.arange(8).reshape(8, 1), np.arange(9).reshape(9, 1)
    assert tk.use_union_matmul(eight, np.ones_like(eight, dtype=bool))[0] is True  # 8 * 8 <= 8 * 8
    assert tk.use_union_matmul(nine, np.ones_like(nine, dtype=bool))[0] is False  # 9 * 9 > 8 * 9
    # Rows, not columns, multiply the union: 2 rows x 20 distinct of 40 columns vs 8 x 20 pairs.
    wide = np.arange(40).reshape(2, 20) % 20
    mask = np.zeros_like(wide, dtype=bool)
    mask[:, :10] = True
    assert tk.use_union_matmul(wide, mask)[0] is True  # 2 * 10 <= 8 * 20 (40 * 10 would not be)


def test_candidate_topk_keys_never_selects_padding():
    scores = np.array([[1.0, 5.0, 9.0], [2.0, 2.0, 2.0]], dtype=np.float32)
    positions = np.array([[3, 1, 0], [7, 4, 0]])
    valid = np.array([[True, True, False], [True, True, False]])
    keys = tk.candidate_topk_keys(scores, positions, valid, 3)
    s, i = tk.unpack_keys(keys)
    assert i.tolist() == [[1, 3, -1], [4, 7, -1]]
    assert s.tolist() == [[5.0, 1.0, -np.inf], [2.0, 2.0, -np.inf]]


@pytest.mark.parametrize("overlap", ["shared", "disjoint"])
def test_search_candidates_numpy_matches_a_dense_reference(overlap):
    rng = np.random.default_rng(4)
    corpus = rng.integers(-2, 3, (300, 5)).astype(np.float32)
    queries = rng.integers(-2, 3, (25, 5)).astype(np.float32)
    if overlap == "shared":  # one pool for all: the union matmul wins
        pool = rng.choice(300, 40, replace=False)
        candidates = [np.sort(rng.choice(pool, int(n), replace=False)) for n in rng.integers(0, 40, 25)]
        assert tk.use_union_matmul(*_first_batch(candidates))[0]
    else:  # each query its own rows: gather + einsum
        candidates = [np.arange(12 * q, 12 * q + int(n)) for q, n in enumerate(rng.integers(1, 12, 25))]
        assert not tk.use_union_matmul(*_first_batch(candidates))[0]
    dense = queries @ corpus.T
    allowed = np.full(dense.shape, -np.inf, dtype=np.float32)
    for q, c in enumerate(candidates):
        allowed[q, c] = dense[q, c]
    for k in (1, 7, 45):
        for budget in (1, 10**9):
            got_s, got_i = tk.search_candidates_numpy(queries, corpus, candidates, k, budget)
            exp_s, exp_i = lexsort_topk(allowed, np.broadcast_to(np.arange(300), dense.shape), k)
            np.testing.assert_array_equal(got_i, exp_i)
            np.testing.assert_array_equal(got_s, exp_s)


def _first_batch(candidates):
    _, positions, valid = next(tk.candidate_batches(candidates, 5, 10**9))
    return positions, valid
