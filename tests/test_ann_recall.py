"""Approximate searches say how approximate they were: ANN recall@k in the result, the console
and the leaderboard, checked against an independent computation (python sets over numpy's
exact ranking of the same vectors)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from tests.conftest import REPO, write_beir
from tests.test_matryoshka import FixedEncoder
from vembed_bench.data.types import Item
from vembed_bench.evaluation import evaluate
from vembed_bench.evaluation.predictions import read_trec_run
from vembed_bench.report.console import print_result
from vembed_bench.search.recall import recall_at_k, recall_summary, sample_queries

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")
N_DOCS, N_QUERIES, KS = 600, 120, (1, 5, 20)


def set_recall(approximate: list[list[str]], exact: list[list[str]], k: int) -> float:
    """The definition, with python sets: share of each exact top-k found in the approximate top-k."""
    shares = [len(set(a[:k]) & set(e[:k])) / len(e[:k]) for a, e in zip(approximate, exact) if e[:k]]
    return sum(shares) / len(shares)


def test_recall_at_k_matches_sets_with_padding():
    rng = np.random.default_rng(0)
    approx = rng.integers(-1, 30, (200, 10))
    exact = np.array([rng.permutation(30)[:10] for _ in range(200)])
    exact[:20, 6:] = -1  # fewer exact results than k (small corpus, excluded rows)
    exact[20] = -1  # no exact result at all: left out
    approx[5] = exact[5]
    got = recall_at_k(approx, exact, [1, 3, 10])

    def ids(row):
        return [int(x) for x in row if x >= 0]

    for k in (1, 3, 10):
        assert got[k] == pytest.approx(set_recall([ids(r[:k]) for r in approx], [ids(r[:k]) for r in exact], k))
    assert recall_at_k(approx[20:21], exact[20:21], [5]) == {5: None}


@pytest.fixture
def task(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(N_DOCS)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(N_QUERIES)]
    qrels = {"test": [(f"q{i}", f"d{i}", 1) for i in range(N_QUERIES)]}
    return write_beir(tmp_path / "syn", corpus, queries, qrels)


def exact_ranking(query_ids: list[str], k: int) -> list[list[str]]:
    """numpy: every score, ordered by (score desc, position asc), on the encoder's own vectors."""
    encoder = FixedEncoder()
    docs = [Item(id=f"d{i}", text="") for i in range(N_DOCS)]
    q = encoder._vectors([Item(id=qid, text="") for qid in query_ids]).astype(np.float64)
    x = encoder._vectors(docs).astype(np.float64)
    scores = q @ x.T
    order = np.lexsort((np.broadcast_to(np.arange(N_DOCS), scores.shape), -scores), axis=1)[:, :k]
    return [[f"d{j}" for j in row] for row in order]


@needs_faiss
@pytest.mark.parametrize("sample", [None, 25])
def test_recorded_recall_equals_an_independent_computation(task, tmp_path, monkeypatch, sample):
    if sample:
        monkeypatch.setattr("vembed_bench.search.recall.RECALL_SAMPLE", sample)
    results = tmp_path / "res"
    result = evaluate(task, FixedEncoder(), cache="off", results_dir=results, show_progress=False,
                      k_values=list(KS), main_metric="ndcg@20", index="IVF16,Flat", save_predictions=True, seed=3)
    stored = json.loads(next(results.rglob("*.json")).read_text())
    info = stored["search_info"]
    assert info["exact"] is False and info["index"] == "IVF16,Flat"
    n = sample or N_QUERIES
    assert info["ann_recall_queries"] == n and info["ann_recall_seed"] == 3
    assert info["ann_recall_reference"].endswith("/flat (exact)")
    assert "ann_recall" in stored["timings"]
    # The approximate ranking as written for trec_eval; the sample as documented (seeded, sorted).
    run = read_trec_run(next(results.rglob("*.trec")))
    rows = list(range(N_QUERIES)) if sample is None else sorted(
        np.random.default_rng(3).choice(N_QUERIES, size=sample, replace=False).tolist())
    query_ids = [f"q{i}" for i in rows]
    approximate = [sorted(run[qid], key=lambda d: -run[qid][d]) for qid in query_ids]
    exact = exact_ranking(query_ids, max(KS))
    for k in KS:
        assert info[f"ann_recall@{k}"] == pytest.approx(set_recall(approximate, exact, k), abs=1e-12)
    assert 0.2 < info["ann_recall@20"] < 1.0  # one probed list of 16: really approximate
    assert result.search_info == info
    # The console summary line shows the main metric's cutoff.
    console = Console(record=True, width=200)
    print_result(result, console=console)
    text = console.export_text()
    expected = f"search: faiss/IVF16,Flat (ANN recall@20 {info['ann_recall@20']:.2f} on {n:,} queries)"
    assert expected in text


def test_exact_results_measure_nothing(task):
    result = evaluate(task, FixedEncoder(), cache="off", results_dir=None, show_progress=False,
                      k_values=list(KS), main_metric="ndcg@20", backend="numpy")
    assert not any(key.startswith("ann_recall") for key in result.search_info)
    assert "ann_recall" not in result.timings
    assert recall_summary(result.search_info) is None


def test_summary_picks_the_main_metric_cutoff():
    info = {"ann_recall@1": 1.0, "ann_recall@10": 0.9712, "ann_recall@100": 0.5, "ann_recall_queries": 1000}
    assert recall_summary(info, "ndcg@10") == "ANN recall@10 0.97 on 1,000 queries"
    assert recall_summary(info, "rsum") == "ANN recall@100 0.50 on 1,000 queries"
    assert sample_queries(10, 1000, 0).tolist() == list(range(10))


@needs_faiss
def test_cli_prints_the_recall(tmp_path, capsys):
    from tests.test_cli_eval import cli
    from tests.train_helpers import tiny_st_folder

    model = tiny_st_folder(tmp_path / "model", seed=1)
    corpus = [{"_id": f"d{i}", "text": f"document {i} about topic {i % 7} and {i % 5}"} for i in range(300)]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 7} and {i % 5}"} for i in range(40)]
    task = write_beir(tmp_path / "toy", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(40)]})
    code, out, err = cli(capsys, "eval", "--task", str(task), "--model", str(model), "--index", "HNSW8",
                         "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
                         "--device", "cpu", "--no-progress")
    assert code == 0, err
    info = json.loads(next((tmp_path / "res").rglob("*.json")).read_text())["search_info"]
    printed = " ".join(out.split())  # the terminal wraps long lines
    assert f"search: faiss/HNSW8 (ANN recall@10 {info['ann_recall@10']:.2f} on 40 queries)" in printed


# -- the leaderboard ------------------------------------------------------------------------------


def test_leaderboard_marks_approximate_results_and_explains_them(tmp_path):
    from vembed_bench.report.build import write_leaderboards

    shutil.copytree(REPO / "tests" / "data" / "results", tmp_path / "results")
    path = tmp_path / "results" / "text-small-dc3d9353" / "faq_en" / "test.hnsw.json"
    record = json.loads((tmp_path / "results" / "text-small-dc3d9353" / "faq_en" / "test.json").read_text())
    record["search_info"].update({"index": "hnsw", "exact": False, "ann_recall@1": 0.9833, "ann_recall@5": 0.95,
                                  "ann_recall@10": 0.9417, "ann_recall_queries": 60, "ann_recall_seed": 0,
                                  "ann_recall_reference": "faiss/flat (exact)"})
    path.write_text(json.dumps(record))
    old = json.loads(json.dumps(record))
    for key in [k for k in old["search_info"] if k.startswith("ann_recall")]:
        del old["search_info"][key]
    old["search_info"]["index"] = "IVF8,PQ4"
    (path.parent / "test.ivf.json").write_text(json.dumps(old))
    write_leaderboards([tmp_path / "results"], tmp_path / "lb", plots=False, html=False)
    overview = (tmp_path / "lb" / "README.md").read_text()
    page = (tmp_path / "lb" / "tasks" / "faq_en-test.md").read_text()
    assert "| text-small [hnsw] ≈ |" in overview and "| text-small |" in overview
    assert "≈ approximate search" in overview and "each task page lists it" in overview
    assert "text-small [hnsw] ≈" in page and "≈ approximate search" in page
    assert "| text-small [hnsw] ≈ | @1 0.983, @5 0.950, @10 0.942 | 60 | 0 | faiss/flat (exact) |" in page
    assert "| text-small [IVF8,PQ4] ≈ | not measured (older result file) |" in page
    docs_page = (tmp_path / "lb" / "tasks" / "docs_en-test.md").read_text()
    assert "≈" not in docs_page  # no approximate result on this task: no footnote
