"""Significance-aware ranks: Holm, letters, rank intervals and the MDE against hand-computed
cases, scipy, networkx and textbook definitions."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from markdown_tables import md_table
from scipy import stats

from vembed_bench.metrics import MetricScores
from vembed_bench.report.collect import ResultFile
from vembed_bench.report.document import to_markdown
from vembed_bench.report.leaderboard import Board
from vembed_bench.report.ranks import (
    align_board,
    best_ranks,
    board_ranks,
    compact_letters,
    cross_task_rank_blocks,
    cross_task_ranks,
    holm,
    minimum_detectable_effect,
    rank_blocks,
    rank_interval,
    rank_models,
)

# ---------------------------------------------------------------------------- Holm


def holm_reference(p: list[float]) -> list[float]:
    """Textbook Holm: adjusted p_(k) = max over l <= k of min(1, (m - l + 1) p_(l))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, running = [0.0] * m, 0.0
    for rank, i in enumerate(order, start=1):
        running = max(running, min(1.0, (m - rank + 1) * p[i]))
        out[i] = running
    return out


def test_holm_on_a_hand_case():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    assert holm(np.array([0.01, 0.04, 0.03, 0.005])) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm(np.array([0.5, 0.9])).tolist() == [1.0, 1.0]  # capped at 1


def test_holm_equals_the_reference_and_the_step_down_rejections():
    rng = np.random.default_rng(0)
    for trial in range(50):
        p = rng.random(rng.integers(1, 30)) ** 3
        p[: len(p) // 3] = p[0]  # ties
        assert holm(p) == pytest.approx(holm_reference(p.tolist()), abs=1e-15)
        # Holm's procedure: reject p_(1), p_(2), ... while p_(k) <= alpha / (m - k + 1).
        alpha, m = 0.05, len(p)
        rejected, order = np.zeros(m, bool), np.argsort(p)
        for k, i in enumerate(order):
            if p[i] > alpha / (m - k):
                break
            rejected[i] = True
        assert ((holm(p) <= alpha) == rejected).all()


def test_holm_equals_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    p = np.random.default_rng(1).random(40) ** 2
    assert holm(p) == pytest.approx(multitest.multipletests(p, method="holm")[1], abs=1e-15)


# ---------------------------------------------------------------------------- letters


def differ_matrix(m: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    out = np.zeros((m, m), dtype=bool)
    for i, j in pairs:
        out[i, j] = out[j, i] = True
    return out


@pytest.mark.parametrize(
    "m, pairs, expected",
    [
        (3, [], ["a", "a", "a"]),  # nothing differs: one group
        (3, [(0, 1), (0, 2), (1, 2)], ["a", "b", "c"]),  # everything differs
        (3, [(0, 2)], ["a", "ab", "b"]),  # chain: 0~1, 1~2, 0 != 2
        (4, [(0, 1)], ["a", "b", "ab", "ab"]),  # {0,2,3} and {1,2,3}
        (5, [(0, 2), (0, 3), (0, 4), (1, 4)], ["a", "ab", "bc", "bc", "c"]),
    ],
)
def test_compact_letters_on_hand_cases(m, pairs, expected):
    assert compact_letters(differ_matrix(m, pairs)) == expected


def test_compact_letters_are_the_maximal_cliques_of_the_no_difference_graph():
    nx = pytest.importorskip("networkx")
    rng = np.random.default_rng(2)
    for _ in range(40):
        m = int(rng.integers(2, 9))
        pairs = [(i, j) for i, j in itertools.combinations(range(m), 2) if rng.random() < 0.4]
        letters = compact_letters(differ_matrix(m, pairs))
        groups = {frozenset(k for k in range(m) if c in letters[k]) for c in set("".join(letters))}
        same = nx.complete_graph(m)
        same.remove_edges_from(pairs)
        assert groups == {frozenset(c) for c in nx.find_cliques(same)}
        for i, j in itertools.combinations(range(m), 2):  # the display's defining property
            assert bool(set(letters[i]) & set(letters[j])) == ((i, j) not in pairs)
    assert compact_letters(differ_matrix(6, [(0, 1), (2, 3), (4, 5)]), max_letters=7) is None


# ---------------------------------------------------------------------------- one board


def test_best_ranks_share_the_best_rank_on_ties():
    assert best_ranks(np.array([0.5, 0.7, 0.5, 0.1])).tolist() == [[2, 1, 2, 4]]
    assert best_ranks(np.array([[0.3, 0.3 + 1e-15], [0.2, 0.1]])).tolist() == [[1, 1], [1, 2]]


def test_rank_interval_keeps_ranks_seen_in_at_least_2_5_percent_of_replicates():
    # Sorted, 1000 replicates: positions 0-24 rank 1, 25-974 rank 2, 975-999 rank 3; the 2.5%
    # quantile sits at position 24.975 (rounded down) and the 97.5% at 974.025 (rounded up).
    ranks = np.array([1] * 25 + [2] * 950 + [3] * 25)[:, None]
    low, high = rank_interval(np.random.default_rng(0).permutation(ranks))
    assert (low.tolist(), high.tolist()) == ([1], [3])
    low, high = rank_interval(np.array([1] * 24 + [2] * 952 + [3] * 24)[:, None])
    assert (low.tolist(), high.tolist()) == ([2], [2])


def test_well_separated_models_get_point_intervals_and_tiny_p_values():
    rng = np.random.default_rng(3)
    base = rng.random(300) * 0.4
    x = np.column_stack([base + 0.4, base + 0.2 + rng.normal(0, 0.02, 300), base])
    r = rank_models(x, ["a", "b", "c"], metric="m", n_resamples=2_000)
    assert r.ranks.tolist() == r.rank_low.tolist() == r.rank_high.tolist() == [1, 2, 3]
    assert (r.p_value[np.triu_indices(3, 1)] < 0.001).all()
    assert r.letters == ["a", "b", "c"] and r.separable_adjacent() == 2
    assert r.delta[0, 2] == pytest.approx(0.4) and r.delta[2, 0] == pytest.approx(-0.4)


def test_identical_models_tie_with_p_one_and_indistinguishable_ones_span():
    rng = np.random.default_rng(4)
    a = rng.random(200)
    # b is a exactly; c has a's values on other queries (same mean, different pairing).
    x = np.column_stack([a, a, rng.permutation(a), a - 0.5])
    r = rank_models(x, ["a", "b", "c", "d"], metric="m", n_resamples=2_000)
    assert r.p_value[0, 1] == 1.0 and r.p_holm[0, 1] == 1.0
    assert r.ranks.tolist() == [1, 1, 1, 4]
    # a and b tie in every replicate; c falls below them in about half of them.
    assert (r.rank_low[:2].tolist(), r.rank_high[:2].tolist()) == ([1, 1], [2, 2])
    assert (r.rank_low[2], r.rank_high[2]) == (1, 3)
    assert (r.rank_low[3], r.rank_high[3]) == (4, 4)
    assert r.letters == ["a", "a", "a", "b"]
    two = rank_models(x[:, :2], ["a", "b"], metric="m", n_resamples=500)
    assert two.rank_low.tolist() == two.rank_high.tolist() == [1, 1]  # tied: one shared rank


@pytest.mark.parametrize("z, spans", [(1.0, True), (4.0, False)])
def test_rank_interval_spans_exactly_when_the_swap_is_likely(z, spans):
    """Two models whose paired difference has mean z standard errors: the bootstrap swaps them
    with probability about Phi(-z) (0.16 or 3e-5), so the interval spans iff that > 2.5%."""
    noise = np.random.default_rng(5).normal(size=400)
    noise = (noise - noise.mean()) / noise.std(ddof=1)
    d = z / np.sqrt(400) + noise  # mean z * sd / sqrt(n) with sd 1
    base = np.random.default_rng(6).random(400)
    r = rank_models(np.column_stack([base + d, base]), ["a", "b"], metric="m", n_resamples=4_000)
    assert (r.rank_high[0] == 2) == spans and (r.rank_low[1] == 1) == spans


def test_pair_p_value_equals_scipy_exact_permutation_test():
    rng = np.random.default_rng(7)
    x = rng.random((11, 3))
    x[:, 1] += 0.15
    r = rank_models(x, ["a", "b", "c"], metric="m", n_resamples=10_000)  # 2**11 <= 10,000: exact
    for i, j in itertools.combinations(range(3), 2):
        ref = stats.permutation_test(
            (x[:, i], x[:, j]),
            lambda u, v, axis: np.mean(u - v, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=10_000,
        ).pvalue
        assert r.p_value[i, j] == r.p_value[j, i] == pytest.approx(ref, abs=1e-12)
        assert r.delta[i, j] == pytest.approx(x[:, i].mean() - x[:, j].mean())
    assert r.p_holm[np.triu_indices(3, 1)] == pytest.approx(holm(r.p_value[np.triu_indices(3, 1)]))


def test_minimum_detectable_effect_formula_and_power():
    z = stats.norm.ppf
    assert minimum_detectable_effect(0.2, 100) == pytest.approx((z(0.975) + z(0.8)) * 0.02)
    assert minimum_detectable_effect(0.2, 100) == pytest.approx(0.0560317, abs=1e-7)
    assert minimum_detectable_effect(0.1, 400, alpha=0.01, power=0.9) == pytest.approx(
        (2.5758293 + 1.2815516) * 0.1 / 20, abs=1e-8
    )
    # A true difference of one MDE is found by a two-sided paired z-test about 80% of the time.
    rng = np.random.default_rng(8)
    mde = minimum_detectable_effect(0.3, 150)
    d = rng.normal(mde, 0.3, size=(4_000, 150))
    found = np.abs(d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(150))) > z(0.975)
    assert found.mean() == pytest.approx(0.8, abs=0.03)


def test_board_mde_uses_the_median_pairwise_sd():
    x = np.random.default_rng(9).random((50, 4))
    r = rank_models(x, list("abcd"), metric="m", n_resamples=100)
    sds = [np.std(x[:, i] - x[:, j], ddof=1) for i, j in itertools.combinations(range(4), 2)]
    assert r.sd_median == pytest.approx(np.median(sds))
    assert r.mde == pytest.approx(2.8015852 * np.median(sds) / np.sqrt(50), rel=1e-7)


# ---------------------------------------------------------------------------- boards of results


def _result(task, ids, values, model) -> ResultFile:
    from vembed_bench.results import Result

    values = np.asarray(values, dtype=float)
    scores = MetricScores(
        query_ids=list(ids),
        per_query={"ndcg@10": values},
        aggregate={"ndcg@10": float(values.mean())},
    )
    result = Result(
        task=task,
        split="test",
        model=model,
        main_metric="ndcg@10",
        scores=scores.aggregate,
        per_query=scores,
        k_values=[10],
        metric_definitions={},
        model_info={"fingerprint": model},
        task_info={"data_fingerprint": task, "n_queries": len(values), "n_corpus": 5},
        search_info={"index": "flat", "exact": True},
        embedding_dim=4,
        seed=0,
        limit=None,
        timings={},
        environment={},
    )
    return ResultFile(result=result, path=Path(f"/r/{model}/{task}.json"))


def _board(task: str, items: list[ResultFile]) -> Board:
    items = sorted(items, key=lambda i: (-i.result.main_score, i.result.model))
    return Board(task=task, split="test", slug=f"{task}-test", entries=items)


def label(result) -> str:
    return result.model


def test_board_aligns_by_query_id_and_skips_other_query_sets():
    ids = [f"q{i}" for i in range(40)]
    rng = np.random.default_rng(10)
    a, b = rng.random(40), rng.random(40) * 0.5
    order = rng.permutation(40)
    board = _board(
        "t",
        [
            _result("t", ids, a, "a"),
            _result("t", [ids[k] for k in order], b[order], "b"),  # same queries, other order
            _result("t", [*ids[:-1], "other"], a, "c"),  # one query differs
        ],
    )
    aligned = align_board(board, label)
    assert aligned.labels == ["a", "b"] and np.array_equal(aligned.values, np.column_stack([a, b]))
    assert [s[0] for s in aligned.skipped] == ["c"] and "different queries" in aligned.skipped[0][1]
    ranks = board_ranks(board, label, n_resamples=500)
    direct = rank_models(np.column_stack([a, b]), ["a", "b"], metric="ndcg@10", n_resamples=500)
    assert ranks.p_value.tolist() == direct.p_value.tolist()
    assert ranks.skipped == aligned.skipped


def test_rank_blocks_are_reproducible_and_match_the_statistics():
    rng = np.random.default_rng(11)
    ids = [f"q{i}" for i in range(80)]
    base = rng.random(80)
    items = [_result("t", ids, np.clip(base + s + rng.normal(0, 0.1, 80), 0, 1), m)
             for m, s in [("a", 0.2), ("b", 0.15), ("c", 0.0)]]
    board = _board("t", items)
    blocks = rank_blocks(board, label, seed=3, n_resamples=1_000)
    text = to_markdown(blocks, Path("/r"))
    assert text == to_markdown(rank_blocks(board, label, seed=3, n_resamples=1_000), Path("/r"))
    r = board_ranks(board, label, seed=3, n_resamples=1_000)
    rows = md_table(text, "| rank |")
    assert [row["model"] for row in rows] == ["a", "b", "c"]
    assert rows[1]["p vs #1"] == f"{r.p_value[0, 1]:.4f}"
    assert rows[2]["Holm p vs #1"] == f"{r.p_holm[0, 2]:.4f}"
    assert f"{100 * r.mde:.2f}" in text and "1,000 bootstrap resamples of the 80 queries" in text
    assert rank_blocks(_board("t", items[:1]), label) == []


# ---------------------------------------------------------------------------- across tasks


def test_cross_task_means_task_choice_and_reproducibility():
    rng = np.random.default_rng(12)
    boards = []
    for task, n in [("t1", 60), ("t2", 90), ("t3", 30)]:
        ids = [f"{task}-{i}" for i in range(n)]
        base = rng.random(n) * 0.5
        models = {"a": 0.4, "b": 0.2, "c": 0.0} if task != "t3" else {"d": 0.1, "a": 0.4}
        if task == "t1":
            models["d"] = 0.1
        boards.append(_board(task, [_result(task, ids, base + s, m) for m, s in models.items()]))
    r = cross_task_ranks(boards, label, seed=1, n_resamples=1_000)
    # Candidates: {t1,t2} x {a,b,c} (6 cells) beats {t1,t3} x {a,d} (4 cells).
    assert r.tasks == ["t1-test", "t2-test"] and r.labels == ["a", "b", "c"]
    assert r.left_out == [("d", 1)]
    for k, m in enumerate(r.labels):
        per_task = [b.entries[[e.result.model for e in b.entries].index(m)].result.main_score
                    for b in boards[:2]]
        assert r.means[k] == pytest.approx(np.mean(per_task))
    assert r.rank_low.tolist() == r.rank_high.tolist() == [1, 2, 3]
    again = cross_task_ranks(boards, label, seed=1, n_resamples=1_000)
    assert again.rank_low.tolist() == r.rank_low.tolist()
    one = to_markdown(cross_task_rank_blocks(boards, label, seed=1, n_resamples=1_000), Path("/r"))
    two = to_markdown(cross_task_rank_blocks(boards, label, seed=1, n_resamples=1_000), Path("/r"))
    assert one == two and "d (1 of 2)" in one
    assert cross_task_ranks(boards[2:], label) is None  # one task: nothing to combine


def test_cross_task_resamples_each_task_independently():
    """a beats b on t1 by exactly what b beats a on t2, query for query, with the same number of
    queries. Shared resampled indices would cancel the difference in every replicate (a tie);
    independent resampling lets either model lead."""
    rng = np.random.default_rng(13)
    x, y = rng.random(50), rng.random(50)
    ids1, ids2 = [f"u{i}" for i in range(50)], [f"v{i}" for i in range(50)]
    boards = [
        _board("t1", [_result("t1", ids1, x, "a"), _result("t1", ids1, y, "b")]),
        _board("t2", [_result("t2", ids2, y, "a"), _result("t2", ids2, x, "b")]),
    ]
    r = cross_task_ranks(boards, label, seed=0, n_resamples=2_000)
    assert r.ranks.tolist() == [1, 1]
    assert r.rank_low.tolist() == [1, 1] and r.rank_high.tolist() == [2, 2]


# ---------------------------------------------------------------------------- written pages


def test_task_page_ranks_agree_with_the_leaderboard_and_the_raw_json(tmp_path):
    import json
    import re

    from conftest import REPO

    from vembed_bench.report.build import write_leaderboards

    fixtures = REPO / "tests" / "data" / "results"
    write_leaderboards([fixtures], tmp_path, plots=False, html=False)
    page = (tmp_path / "tasks" / "faq_en-test.md").read_text()
    board, ranks = md_table(page, "| # |"), md_table(page, "| rank |")
    assert [r["model"] for r in ranks] == [r["model"] for r in board]
    assert [r["rank"] for r in ranks] == [r["#"] for r in board]
    # p against rank 1: the same test and sign draws as the leaderboard's p column.
    assert [r["p vs #1"] for r in ranks[1:]] == [r["p"] for r in board[1:]]
    # The MDE from the raw per-query values, aligned by query id, by hand.
    values = {}
    for path in fixtures.rglob("faq_en/test.json"):
        record = json.loads(path.read_text())
        if "sampled" not in path.parts:
            pq = record["per_query"]
            values[path] = dict(zip(pq["query_ids"], pq["per_query"]["ndcg@10"]))
    ids = sorted(next(iter(values.values())))
    x = np.array([[v[q] for q in ids] for v in values.values()]).T
    assert x.shape[1] == len(board) + 1  # the zero-shot copy of the training run is a repeat
    x = np.unique(x, axis=1)
    pairs = itertools.combinations(range(len(board)), 2)
    sds = [np.std(x[:, i] - x[:, j], ddof=1) for i, j in pairs]
    mde = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.median(sds) / np.sqrt(len(ids))
    shown = re.search(r"true difference in ndcg@10 of ([\d.]+)", page).group(1)
    assert shown == f"{100 * mde:.2f}"
