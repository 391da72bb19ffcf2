"""Metrics checked against pytrec_eval (trec_eval) and hand-computed cases."""

from __future__ import annotations

import json
import random
from math import log2

import numpy as np
import pytest
import pytrec_eval

from vembed_bench.metrics import (
    METRIC_DEFINITIONS,
    MetricScores,
    metric_names,
    score,
    score_indices,
)

K_VALUES = [1, 3, 5, 10, 100]


def _random_case(seed: int, n_queries: int = 400, n_docs: int = 40):
    """Random graded qrels and rankings covering the awkward cases.

    Grades include -1 and 0 (judged non-relevant), queries have 1..8 relevant
    docs (some never retrieved, so R can exceed the list length and k), and
    rankings have 1..20 results, so many are shorter than k.
    """
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(n_docs)]
    qrels: dict[str, dict[str, int]] = {}
    rankings: dict[str, list[str]] = {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, 12))
        grades = {d: rng.choice([-1, 0, 0, 1, 1, 2, 3]) for d in judged}
        if not any(g > 0 for g in grades.values()):
            grades[judged[0]] = rng.randint(1, 3)
        qrels[qid] = grades
        rankings[qid] = rng.sample(docs, rng.randint(1, 20))
    return qrels, rankings


def _trec_run(rankings, cut: int | None = None):
    """Strictly decreasing scores so trec_eval keeps our order (it breaks ties by doc id)."""
    return {
        q: {d: float(len(r) - i) for i, d in enumerate(r[:cut] if cut else r)}
        for q, r in rankings.items()
    }


def test_matches_pytrec_eval_per_query():
    qrels, rankings = _random_case(seed=7)
    ours = score(rankings, qrels, K_VALUES)
    assert ours.query_ids == list(rankings)

    cuts = ",".join(map(str, K_VALUES))
    evaluator = pytrec_eval.RelevanceEvaluator(
        qrels, {"P_1", f"recall.{cuts}", f"ndcg_cut.{cuts}", f"map_cut.{cuts}"}
    )
    ref = evaluator.evaluate(_trec_run(rankings))  # keys like "ndcg_cut_5"
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"})
    ref_rr = {k: rr.evaluate(_trec_run(rankings, cut=k)) for k in K_VALUES}

    for i, qid in enumerate(ours.query_ids):
        pq = {name: float(v[i]) for name, v in ours.per_query.items()}
        assert pq["precision@1"] == pytest.approx(ref[qid]["P_1"], abs=1e-12), qid
        for k in K_VALUES:
            assert pq[f"recall@{k}"] == pytest.approx(ref[qid][f"recall_{k}"], abs=1e-12), qid
            assert pq[f"ndcg@{k}"] == pytest.approx(ref[qid][f"ndcg_cut_{k}"], abs=1e-12), qid
            assert pq[f"map@{k}"] == pytest.approx(ref[qid][f"map_cut_{k}"], abs=1e-12), qid
            assert pq[f"mrr@{k}"] == pytest.approx(ref_rr[k][qid]["recip_rank"], abs=1e-12), qid
            # hit@k: independent pure-Python definition.
            expected_hit = float(any(qrels[qid].get(d, 0) > 0 for d in rankings[qid][:k]))
            assert pq[f"hit@{k}"] == expected_hit, qid

    # The random case must actually exercise the edge cases it claims to.
    n_rel = {q: sum(g > 0 for g in j.values()) for q, j in qrels.items()}
    assert any(len(rankings[q]) < 10 for q in rankings)
    assert any(n_rel[q] > 3 for q in qrels)
    assert any(0 < ours.per_query["recall@5"][i] < 1 for i in range(len(qrels)))
    assert len({g for j in qrels.values() for g in j.values()}) == 5
    # Aggregates are the means of the per-query values.
    for name, values in ours.per_query.items():
        assert ours.aggregate[name] == pytest.approx(float(np.mean(values)))


def _one(ranking, judged, k_values):
    s = score({"q": ranking}, {"q": judged}, k_values)
    return {name: float(v[0]) for name, v in s.per_query.items()}


def test_hand_graded_case():
    # qrels: a=3, b=2, c=1, d=0 (judged non-relevant); ranking: d, b, x, a.
    # Relevant: a, b, c (R = 3). Relevant ranks in the list: b@2, a@4.
    m = _one(["d", "b", "x", "a"], {"a": 3, "b": 2, "c": 1, "d": 0}, [1, 3, 5])
    # recall@3 = |{b}| / 3; recall@5 = |{b, a}| / 3.
    assert m["recall@1"] == 0.0
    assert m["recall@3"] == pytest.approx(1 / 3)
    assert m["recall@5"] == pytest.approx(2 / 3)
    # hit: nothing relevant at rank 1; b at rank 2.
    assert (m["hit@1"], m["hit@3"], m["hit@5"]) == (0.0, 1.0, 1.0)
    # mrr: first relevant is b at rank 2 -> 1/2 for k >= 2.
    assert (m["mrr@1"], m["mrr@3"], m["mrr@5"]) == (0.0, 0.5, 0.5)
    # nDCG@3: DCG = 2/log2(3) (b at rank 2); ideal = 3/log2(2) + 2/log2(3) + 1/log2(4).
    idcg = 3 / log2(2) + 2 / log2(3) + 1 / log2(4)
    assert m["ndcg@1"] == 0.0
    assert m["ndcg@3"] == pytest.approx((2 / log2(3)) / idcg)
    # nDCG@5: DCG adds a (grade 3) at rank 4: 3/log2(5); ideal unchanged (only 3 relevant).
    assert m["ndcg@5"] == pytest.approx((2 / log2(3) + 3 / log2(5)) / idcg)
    # MAP@3 = P@2 / R = (1/2) / 3; MAP@5 = (P@2 + P@4) / R = (1/2 + 2/4) / 3.
    assert m["map@3"] == pytest.approx(1 / 6)
    assert m["map@5"] == pytest.approx(1 / 3)
    assert m["precision@1"] == 0.0


def test_hand_ndcg_ideal_cut_at_k():
    # qrels a=1, b=3; ranking a, b. k=1: DCG = 1/log2(2) = 1; ideal@1 = 3 -> 1/3.
    # k=2: DCG = 1 + 3/log2(3); ideal = 3 + 1/log2(3).
    m = _one(["a", "b"], {"a": 1, "b": 3}, [1, 2])
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@2"] == pytest.approx((1 + 3 / log2(3)) / (3 + 1 / log2(3)))
    assert m["precision@1"] == 1.0


def test_hand_map_with_more_relevant_than_k():
    # R = 5 relevant (a..e); ranking a, x, b.
    # MAP@2 = P@1 / R = 1/5; MAP@3 = (P@1 + P@3) / R = (1 + 2/3) / 5.
    m = _one(["a", "x", "b"], {d: 1 for d in "abcde"}, [2, 3])
    assert m["map@2"] == pytest.approx(1 / 5)
    assert m["map@3"] == pytest.approx((1 + 2 / 3) / 5)
    # recall@3 = 2/5; recall@2 = 1/5.
    assert m["recall@2"] == pytest.approx(1 / 5)
    assert m["recall@3"] == pytest.approx(2 / 5)


def test_hand_relevant_at_rank_k_plus_one_not_counted():
    # Only relevant doc a is at rank 3: every @2 metric is 0, every @3 metric counts it.
    m = _one(["x", "y", "a"], {"a": 1}, [2, 3])
    for fam in ("recall", "hit", "mrr", "ndcg", "map"):
        assert m[f"{fam}@2"] == 0.0, fam
    # @3: recall 1/1, hit 1, mrr 1/3, ndcg (1/log2(4)) / 1 = 0.5, map P@3 / 1 = 1/3.
    assert m["recall@3"] == 1.0
    assert m["hit@3"] == 1.0
    assert m["mrr@3"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx(0.5)
    assert m["map@3"] == pytest.approx(1 / 3)


def test_hand_short_list_and_negative_grade():
    # Ranking shorter than k: [n, a] with n judged -1 (non-relevant, gain 0), a=1, b=2 unretrieved.
    # k=10: recall 1/2, hit 1, mrr 1/2, map (P@2)/2 = (1/2)/2,
    # ndcg = (1/log2(3)) / (2 + 1/log2(3)).
    m = _one(["n", "a"], {"n": -1, "a": 1, "b": 2}, [10])
    assert m["recall@10"] == pytest.approx(0.5)
    assert m["hit@10"] == 1.0
    assert m["mrr@10"] == pytest.approx(0.5)
    assert m["map@10"] == pytest.approx(0.25)
    assert m["ndcg@10"] == pytest.approx((1 / log2(3)) / (2 + 1 / log2(3)))
    assert m["precision@1"] == 0.0


def test_hand_empty_ranking_scores_zero():
    m = _one([], {"a": 1}, [1, 5])
    assert all(v == 0.0 for v in m.values())


@pytest.mark.parametrize("judged", [{"a": 0, "b": -1}, {}])
def test_query_without_relevant_docs_raises(judged):
    qrels = {"good": {"a": 1}, "bad-q": judged}
    with pytest.raises(ValueError, match="bad-q"):
        score({"good": ["a"], "bad-q": ["a"]}, qrels, [1])


def test_query_missing_from_qrels_raises():
    with pytest.raises(ValueError, match="lost"):
        score({"lost": ["a"]}, {"other": {"a": 1}}, [1])


def test_score_indices_padding_and_out_of_corpus_relevant():
    doc_ids = ["a", "b", "c", "d"]
    # q1: ranks c, a, then padding; relevant a and z (z not in the corpus: still R = 2).
    # q2: ranks b only; relevant b.
    indices = np.array([[2, 0, -1], [1, -1, -1]])
    qrels = {"q1": {"a": 1, "z": 1}, "q2": {"b": 2}}
    s = score_indices(indices, ["q1", "q2"], doc_ids, qrels, [1, 3])
    # q1: recall@3 = 1/2, mrr@3 = 1/2, map@3 = (P@2)/2 = 1/4,
    #     ndcg@3 = (1/log2(3)) / (1 + 1/log2(3)).
    np.testing.assert_allclose(s.per_query["recall@3"], [0.5, 1.0])
    np.testing.assert_allclose(s.per_query["mrr@3"], [0.5, 1.0])
    np.testing.assert_allclose(s.per_query["map@3"], [0.25, 1.0])
    np.testing.assert_allclose(
        s.per_query["ndcg@3"], [(1 / log2(3)) / (1 + 1 / log2(3)), 1.0]
    )
    np.testing.assert_allclose(s.per_query["precision@1"], [0.0, 1.0])
    assert s.aggregate["recall@3"] == pytest.approx(0.75)


def test_score_indices_rejects_bad_input():
    with pytest.raises(ValueError):
        score_indices(np.array([[5]]), ["q"], ["a"], {"q": {"a": 1}}, [1])
    with pytest.raises(ValueError):
        score_indices(np.array([[0]]), ["q", "r"], ["a"], {"q": {"a": 1}}, [1])
    with pytest.raises(ValueError):
        score_indices(np.array([[0]]), ["q"], ["a"], {"q": {"a": 1}}, [0])


def test_score_and_score_indices_agree():
    qrels, rankings = _random_case(seed=3, n_queries=200, n_docs=60)
    rng = np.random.default_rng(0)
    doc_ids = [f"d{i}" for i in rng.permutation(60)]
    pos = {d: i for i, d in enumerate(doc_ids)}
    query_ids = list(rankings)
    depth = 25
    indices = np.full((len(query_ids), depth), -1, dtype=np.int64)
    for row, qid in enumerate(query_ids):
        indices[row, : len(rankings[qid])] = [pos[d] for d in rankings[qid]]
    a = score(rankings, qrels, K_VALUES)
    b = score_indices(indices, query_ids, doc_ids, qrels, K_VALUES)
    assert a.query_ids == b.query_ids
    assert list(a.per_query) == list(b.per_query)
    for name in a.per_query:
        np.testing.assert_allclose(a.per_query[name], b.per_query[name], rtol=0, atol=1e-12)
        assert a.aggregate[name] == pytest.approx(b.aggregate[name])


def test_names_definitions_and_roundtrip():
    names = metric_names([10, 1])
    assert names == [
        "recall@1", "recall@10", "hit@1", "hit@10", "mrr@1", "mrr@10",
        "ndcg@1", "ndcg@10", "map@1", "map@10", "precision@1",
    ]  # fmt: skip
    families = {n if n == "precision@1" else n.split("@")[0] + "@k" for n in names}
    assert families == set(METRIC_DEFINITIONS)
    assert all(d.strip() for d in METRIC_DEFINITIONS.values())

    s = score({"q1": ["a", "b"], "q2": ["b"]}, {"q1": {"b": 1}, "q2": {"a": 2}}, [1, 10])
    assert list(s.per_query) == names
    back = MetricScores.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back.query_ids == s.query_ids
    assert back.aggregate == s.aggregate
    for name in names:
        assert back.per_query[name].dtype == np.float64
        np.testing.assert_array_equal(back.per_query[name], s.per_query[name])


def test_document_listed_twice_is_refused_naming_the_query():
    # Counted twice, the one relevant doc would give recall@2 = 2.0 and hit/ndcg above 1.
    with pytest.raises(ValueError, match=r"ranking of query 'q7' lists a document more than once"):
        score({"q1": ["a"], "q7": ["a", "a"]}, {"q1": {"a": 1}, "q7": {"a": 1}}, [2])


def test_relevant_documents_never_ranked_score_zero():
    # No relevant document of any query is among the ranked ones (none is in the corpus the
    # ranking positions point into): every metric is 0, as trec_eval gives.
    m = _one(["a", "b"], {"z": 1, "y": 2}, [1, 2])
    assert set(m.values()) == {0.0}
    s = score_indices(np.array([[0, 1], [1, -1]]), ["q1", "q2"], ["a", "b"],
                      {"q1": {"z": 1}, "q2": {"y": 3}}, [2])
    assert all(np.array_equal(v, [0.0, 0.0]) for v in s.per_query.values())


def test_metric_scores_from_hand_written_json_are_float64():
    # A result file edited by hand (or written by another tool) may hold 1 and 0, not 1.0 and 0.0;
    # integer arrays would then silently do integer arithmetic in later statistics.
    s = MetricScores.from_dict({"query_ids": ["a", "b"], "aggregate": {"hit@1": 0.5},
                                "per_query": {"hit@1": [1, 0]}})
    assert s.per_query["hit@1"].dtype == np.float64
    assert s.per_query["hit@1"].tolist() == [1.0, 0.0] and s.aggregate == {"hit@1": 0.5}
    with pytest.raises(ValueError, match=r"metric 'hit@1' has 3 per-query values but there are 2 query ids"):
        MetricScores.from_dict({"query_ids": ["a", "b"], "aggregate": {}, "per_query": {"hit@1": [1, 0, 1]}})


_DOCS = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    ("indices", "query_ids", "doc_ids", "k_values", "message"),
    [
        ([[0]], ["q"], _DOCS, [], r"^k_values is empty: give at least one cutoff, e\.g\. \[1, 10\]$"),
        ([[0]], ["q"], _DOCS, [3, 0], r"^k values must be >= 1, got 0$"),
        ([0], ["q"], _DOCS, [1], r"^indices must be 2-D \(n_queries, K\), got shape \(1,\)$"),
        ([[0.0]], ["q"], _DOCS, [1], r"^indices must be integers, got dtype float64$"),
        ([[0]], ["q", "r"], _DOCS, [1], r"^2 query ids for 1 rows of indices$"),
        (np.zeros((0, 1), dtype=np.int64), [], _DOCS, [1], r"^no queries to score$"),
        ([[0], [1]], ["q", "q"], _DOCS, [1], r"^query_ids contain duplicates$"),
        ([[-2]], ["q"], _DOCS, [1], r"^indices must lie in \[-1, 3\] for a corpus of 4 documents$"),
        ([[4]], ["q"], _DOCS, [1], r"^indices must lie in \[-1, 3\] for a corpus of 4 documents$"),
        ([[0]], ["q"], ["a", "a"], [1], r"^doc_ids contain duplicates$"),
    ],
)
def test_score_indices_bad_input_messages(indices, query_ids, doc_ids, k_values, message):
    with pytest.raises(ValueError, match=message):
        score_indices(np.asarray(indices), query_ids, doc_ids, {"q": {"a": 1}, "r": {"a": 1}}, k_values)


def test_last_corpus_position_and_padding_are_accepted():
    # The bounds are inclusive: position n_docs - 1 is a document and -1 is padding.
    s = score_indices(np.array([[3, -1]]), ["q"], _DOCS, {"q": {"d": 1}}, [1])
    assert s.aggregate["recall@1"] == 1.0


def test_no_relevant_document_message_says_what_to_do():
    with pytest.raises(ValueError, match=r"query 'q' has no relevant document \(grade > 0\) in the qrels; "
                                         r"drop such queries before scoring"):
        score({"q": ["a"]}, {"q": {"a": 0}}, [1])


def test_no_rankings_at_all_is_refused():
    with pytest.raises(ValueError, match=r"^no queries to score$"):
        score({}, {"q": {"a": 1}}, [1])
