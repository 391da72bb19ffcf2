"""The runner: sweeps of models × tasks, result identity, overwrite strategies, predictions, diffs.

Scores are checked against independent computations (numpy rankings scored by
pytrec_eval); the "loaded once" and "encoded once" claims with counters.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from tests.conftest import write_beir
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.evaluation import evaluate
from vembed_bench.results import load_result

pytrec_eval = pytest.importorskip("pytrec_eval")

DIM = 8


class HashEncoder:
    """Deterministic vectors from the item text (queries share words with their documents),
    counting every item it is asked to encode."""

    def __init__(self, name: str = "hash", salt: int = 0) -> None:
        self.name = name
        self.salt = salt
        self.encoded: list[str] = []

    def _encode(self, items: Sequence[Item]) -> np.ndarray:
        self.encoded.extend(item.id for item in items)
        rows = []
        for item in items:
            vector = np.zeros(DIM)
            for word in f"{item.title} {item.text}".lower().split():
                seed = (sum(word.encode()) * 7919 + self.salt) % (2**32)
                vector += np.random.default_rng(seed).normal(size=DIM)
            rows.append(vector)
        x = np.asarray(rows, dtype=np.float32)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._encode(items)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._encode(items)

    def fingerprint(self) -> str:
        return f"hash-{self.salt}"

    def weights_digest(self) -> str:
        return f"{self.salt:064d}"

    def describe(self) -> dict[str, Any]:
        return {"type": "hash", "name": self.name}


WORDS = ["cats purr softly", "rockets reach orbit", "bread rises with yeast", "rivers flow to sea",
         "bees make honey", "stars burn hydrogen", "trees grow rings", "ice melts in sun"]


def _task(root: Path, name: str, n_queries: int = 8, corpus_words: list[str] | None = None) -> Path:
    docs = corpus_words or WORDS
    corpus = [{"_id": f"d{i}", "text": text} for i, text in enumerate(docs)]
    queries = [{"_id": f"q{i}", "text": WORDS[i].split()[0] + " " + WORDS[i].split()[-1]} for i in range(n_queries)]
    qrels = {"test": [(f"q{i}", f"d{i}", 1) for i in range(n_queries)] + [("q0", "d1", 2)]}
    return write_beir(root / name, corpus, queries, qrels)


@pytest.fixture
def tasks(tmp_path: Path) -> list[Path]:
    return [_task(tmp_path, "alpha"), _task(tmp_path, "beta", 5), _task(tmp_path, "gamma", 6, WORDS[::-1])]


def _reference_ndcg10(task: Path, encoder: HashEncoder) -> float:
    """Independent: numpy ranking of the encoder's own vectors, scored by pytrec_eval."""
    from vembed_bench.data.beir import load_beir

    data = load_beir(task, "test")
    q = encoder.encode_queries(data.queries)
    d = encoder.encode_documents(data.corpus)
    scores = q @ d.T
    run = {query.id: {doc.id: float(scores[i, j]) for j, doc in enumerate(data.corpus)}
           for i, query in enumerate(data.queries)}
    per_query = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in per_query.values()]))


def test_sweep_scores_every_pair_once_and_matches_independent_scores(tasks, tmp_path):
    models = [HashEncoder("m1", 1), HashEncoder("m2", 2)]
    runs = evaluate(task=[str(t) for t in tasks], model=models, results_dir=tmp_path / "res",
                    cache="off", show_progress=False)
    assert [o.status for o in runs] == ["computed"] * 6 and runs.ok
    assert runs.model_loads == {"m1": 1, "m2": 1}
    table = runs.table()
    assert set(table) == {"m1", "m2"} and set(table["m1"]) == {"alpha", "beta", "gamma"}
    for model in models:
        for task in tasks:
            expected = _reference_ndcg10(task, HashEncoder(salt=model.salt))
            assert table[model.name][task.name] == pytest.approx(expected, abs=1e-9)
    assert len(list((tmp_path / "res").rglob("test.json"))) == 6
    frame = runs.to_pandas()
    assert list(frame["status"]) == ["computed"] * 6 and frame["main_score"].notna().all()


def test_items_shared_by_tasks_are_encoded_once(tmp_path):
    first = _task(tmp_path, "first", 8)
    second = _task(tmp_path, "second", 4)  # the same corpus, a subset of the queries
    model = HashEncoder("shared")
    runs = evaluate(task=[str(first), str(second)], model=model, results_dir=None, cache="off",
                    show_progress=False)
    assert runs.ok
    assert sorted(model.encoded) == sorted([f"q{i}" for i in range(8)] + [f"d{i}" for i in range(8)])


def test_a_failed_pair_does_not_stop_the_sweep(tasks, tmp_path):
    broken = tmp_path / "broken"
    _task(tmp_path, "broken")
    (broken / "corpus.jsonl").write_text('{"_id": "d0", "text": "x"}\n{not json\n')
    runs = evaluate(task=[str(tasks[0]), str(broken), str(tasks[1])], model=[HashEncoder("m", 1)],
                    results_dir=tmp_path / "res", cache="off", show_progress=False)
    assert [o.status for o in runs] == ["computed", "failed", "computed"]
    assert "corpus.jsonl:2" in runs.failed[0].error
    assert len(list((tmp_path / "res").rglob("*.json"))) == 2
    assert runs.table()["m"]["broken"] is None


def test_limited_and_full_runs_never_replace_each_other(tasks, tmp_path):
    common = dict(results_dir=tmp_path / "res", cache="off", show_progress=False)
    full = evaluate(str(tasks[0]), HashEncoder("m", 1), **common)
    sample = evaluate(str(tasks[0]), HashEncoder("m", 1), limit=3, seed=5, **common)
    full_path, sample_path = full.default_path(tmp_path / "res"), sample.default_path(tmp_path / "res")
    assert full_path.name == "test.json" and sample_path.name == "test.limit3-seed5.json"
    assert load_result(full_path).task_info["n_queries"] == 8
    assert load_result(sample_path).task_info["n_queries"] == 3
    assert sample.settings == {**full.settings, "limit": 3, "seed": 5}
    # A limit at least as large as the task is the full split: the same identity as the full run.
    whole = evaluate(str(tasks[0]), HashEncoder("m", 1), limit=100, **common)
    assert whole.settings_key == "" and whole.settings == full.settings


def test_overwrite_strategies(tasks, tmp_path):
    common = dict(results_dir=tmp_path / "res", cache="off", show_progress=False)
    model = HashEncoder("m", 1)
    first = evaluate(task=[str(tasks[0])], model=[model], **common)
    path = first[0].path
    stamp = path.stat().st_mtime_ns
    time.sleep(0.01)
    again = evaluate(task=[str(tasks[0])], model=[model], **common)
    assert again[0].status == "reused" and path.stat().st_mtime_ns == stamp
    assert again[0].result.scores == first[0].result.scores
    always = evaluate(task=[str(tasks[0])], model=[model], overwrite="always", **common)
    assert always[0].status == "computed" and path.stat().st_mtime_ns != stamp
    # Changed data: only-missing recomputes, never keeps the stored (now stale) result.
    corpus = tasks[0] / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("cats purr softly", "dogs bark loudly"))
    kept = evaluate(task=[str(tasks[0])], model=[model], overwrite="never", **common)
    assert kept[0].status == "reused" and kept[0].result.scores == always[0].result.scores
    fresh = evaluate(task=[str(tasks[0])], model=[model], **common)
    assert fresh[0].status == "computed" and fresh[0].result.scores != always[0].result.scores
    missing = evaluate(task=[str(tasks[1])], model=[model], overwrite="only-cache", **common)
    assert missing[0].status == "failed" and "only-cache" in missing[0].error
    with pytest.raises(VembedError, match="--overwrite-strategy 'sometimes' is not one of"):
        evaluate(str(tasks[0]), model, overwrite="sometimes", **common)


def test_duplicates_run_once(tasks, tmp_path, caplog):
    model = HashEncoder("m", 1)
    runs = evaluate(task=[str(tasks[0]), str(tasks[0])], model=[model, model], results_dir=None, cache="off",
                    show_progress=False)
    assert len(runs) == 1
    assert "listed more than once" in caplog.text


def test_predictions_rescore_with_pytrec_eval(tasks, tmp_path):
    from vembed_bench.data.beir import load_beir
    from vembed_bench.evaluation.predictions import read_trec_run

    result = evaluate(str(tasks[2]), HashEncoder("m", 3), results_dir=tmp_path / "res", cache="off",
                      show_progress=False, save_predictions=True, k_values=[1, 3, 10])
    run_file = result.default_path(tmp_path / "res").with_suffix(".trec")
    lines = run_file.read_text().splitlines()
    assert len(lines) == 6 * 8 and lines[0].split()[1] == "Q0" and lines[0].split()[3] == "1"
    qrels = load_beir(tasks[2], "test").qrels
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recip_rank"}).evaluate(read_trec_run(run_file))
    ours = dict(zip(result.per_query.query_ids, result.per_query.per_query["ndcg@10"]))
    for qid, values in per_query.items():
        assert ours[qid] == pytest.approx(values["ndcg_cut_10"], abs=1e-9)


def test_diff_names_the_settings_and_the_queries_that_moved(tasks, tmp_path):
    from vembed_bench.report.diff import diff_results

    a = evaluate(str(tasks[0]), HashEncoder("m", 1), results_dir=None, cache="off", show_progress=False)
    b = evaluate(str(tasks[0]), HashEncoder("m", 7), limit=6, results_dir=None, cache="off", show_progress=False)
    diff = diff_results(a, b)
    what = {w for w, _, _ in diff.differences}
    assert {"setting limit", "setting seed", "weights fingerprint", "queries"} <= what
    per_a = dict(zip(a.per_query.query_ids, a.per_query.per_query["ndcg@10"]))
    per_b = dict(zip(b.per_query.query_ids, b.per_query.per_query["ndcg@10"]))
    common = per_a.keys() & per_b.keys()
    assert len(diff.wins) == sum(per_b[q] > per_a[q] + 1e-12 for q in common)
    assert len(diff.losses) == sum(per_b[q] < per_a[q] - 1e-12 for q in common)
    assert diff.ties == len(common) - len(diff.wins) - len(diff.losses)
    assert diff.only_a == sorted(per_a.keys() - per_b.keys())
    assert all(c.delta > 0 for c in diff.wins) and all(c.delta < 0 for c in diff.losses)


def test_benchmark_cards(tmp_path, monkeypatch):
    from vembed_bench.data.benchmarks import resolve_benchmark

    core = resolve_benchmark("vembed-core")
    assert core.tasks == ("sop_i2i", "flickr30k", "t2retrieval", "mmeb")
    with pytest.raises(VembedError, match="unknown benchmark 'nope'; known benchmarks: .*vembed-core"):
        resolve_benchmark("nope")
    card = tmp_path / "mine.yaml"
    card.write_text("name: mine\ntasks:\n  - python_faq\n  - no_such_task\n")
    with pytest.raises(VembedError, match=r"mine.yaml:4: benchmark 'mine' names task 'no_such_task'"):
        resolve_benchmark(card)
    card.write_text("name: mine\ntasks: [python_faq]\nextra: 1\n")
    with pytest.raises(VembedError, match="unknown key 'extra'"):
        resolve_benchmark(card)


def test_result_files_of_schema_1_still_load(tasks, tmp_path):
    result = evaluate(str(tasks[0]), HashEncoder("m", 1), limit=4, results_dir=tmp_path / "res", cache="off",
                      show_progress=False)
    path = result.default_path(tmp_path / "res")
    record = json.loads(path.read_text())
    for key in ("settings", "settings_key"):
        record.pop(key)
    record["schema_version"] = 1
    path.write_text(json.dumps(record))
    old = load_result(path)
    assert old.settings == {"limit": 4, "seed": 0} and old.settings_key == "limit4-seed0"
