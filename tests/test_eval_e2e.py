"""`vembed-bench eval` end to end on real weights (all-MiniLM-L6-v2) and real data (CPython FAQ).

The scores are checked against an independent computation: sentence-transformers'
own embeddings ranked by numpy and scored by pytrec_eval.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vembed_bench
from conftest import REPO
from vembed_bench.data.beir import load_beir
from vembed_bench.demo import demo_model_path
from vembed_bench.results import load_result

pytrec_eval = pytest.importorskip("pytrec_eval")

MODEL = str(demo_model_path())


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(MODEL, device="cpu")


def test_cli_writes_a_complete_result_and_the_api_reproduces_it_from_the_cache(tmp_path, cache_dir):
    results = tmp_path / "results"
    args = ["eval", "--task", "python_faq", "--model", MODEL, "--model-name", "minilm", "--limit", "30",
            "--max-length", "64", "--cache-dir", str(cache_dir), "--results-dir", str(results), "--no-progress"]
    cli = subprocess.run([sys.executable, "-m", "vembed_bench.cli", *args], capture_output=True, text=True, cwd=REPO)
    assert cli.returncode == 0, cli.stderr
    (path,) = results.rglob("*.json")
    record = json.loads(path.read_text())
    for key in ("scores", "per_query", "metric_definitions", "model_info", "task_info", "search_info",
                "k_values", "seed", "limit", "environment", "timings", "embedding_dim"):
        assert record[key] not in (None, {}, []), key
    assert len(record["model_info"]["fingerprint"]) == 64
    assert len(record["task_info"]["data_fingerprint"]) == 64
    assert record["task_info"]["n_queries"] == 30 and record["embedding_dim"] == 384
    assert record["environment"]["versions"]["torch"]
    assert f"{100 * record['scores']['ndcg@10']:.2f}" in cli.stdout  # printed numbers come from the file

    api = vembed_bench.evaluate(task="python_faq", model=MODEL, model_name="minilm", limit=30, max_length=64,
                                cache_dir=cache_dir, results_dir=None, show_progress=False)
    assert api.cache == {"policy": "use", "hits": 2, "misses": 0}
    assert api.scores == load_result(path).scores
    frame = api.to_pandas()
    assert frame.set_index("metric").loc["ndcg@10", "value"] == api.main_score

    # A CLI re-run reuses the identical result; a forced recompute is a full cache hit. Neither
    # loads the model nor imports torch.
    for extra, expected in (([], "reused "), (["--overwrite-strategy", "always"], "cache hits 2/2")):
        rerun = subprocess.run(
            [sys.executable, "-c", "import sys; from vembed_bench.cli import app; "
             f"app({[*args, *extra]!r}, standalone_mode=False); print('TORCH', 'torch' in sys.modules)"],
            capture_output=True, text=True, cwd=REPO,
        )
        assert rerun.returncode == 0, rerun.stderr
        assert "TORCH False" in rerun.stdout and expected in rerun.stdout + rerun.stderr
    rerun_record = json.loads(path.read_text())
    assert rerun_record["scores"] == record["scores"]
    assert rerun_record["model_info"] == record["model_info"]


def test_scores_match_sentence_transformers_plus_pytrec_eval(tiny_beir, sentence_transformer):
    result = vembed_bench.evaluate(task=str(tiny_beir), model=MODEL, cache="off", results_dir=None,
                                   k_values=[1, 3], main_metric="ndcg@3", show_progress=False)
    data = load_beir(tiny_beir, "test")
    q = sentence_transformer.encode([x.text for x in data.queries], normalize_embeddings=True)
    d = sentence_transformer.encode([f"{x.title} {x.text}".strip() for x in data.corpus], normalize_embeddings=True)
    sims = q @ d.T
    run = {qi.id: {di.id: float(sims[i, j]) for j, di in enumerate(data.corpus)} for i, qi in enumerate(data.queries)}
    reference = pytrec_eval.RelevanceEvaluator(data.qrels, {"ndcg_cut.3", "recall.1"}).evaluate(run)
    assert result.scores["ndcg@3"] == pytest.approx(np.mean([v["ndcg_cut_3"] for v in reference.values()]), abs=1e-6)
    assert result.scores["recall@1"] == pytest.approx(np.mean([v["recall_1"] for v in reference.values()]), abs=1e-6)


def test_a_model_object_can_be_passed_instead_of_a_path(tiny_beir, sentence_transformer):
    from_object = vembed_bench.evaluate(task=str(tiny_beir), model=sentence_transformer, cache="off",
                                        results_dir=None, show_progress=False)
    from_path = vembed_bench.evaluate(task=str(tiny_beir), model=MODEL, cache="off", results_dir=None,
                                      show_progress=False)
    for metric, value in from_path.scores.items():
        assert from_object.scores[metric] == pytest.approx(value, abs=1e-6), metric


@pytest.mark.parametrize("make_model, expected", [
    (lambda root: root / "missing", "does not exist"),
    (lambda root: (root / "m").mkdir() or (root / "m"), "cannot tell what kind of model"),
])
def test_bad_model_paths_fail_in_one_line_without_a_result(tmp_path, tiny_beir, make_model, expected):
    model = make_model(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "vembed_bench.cli", "eval", "--task", str(tiny_beir), "--model", str(model),
         "--results-dir", str(tmp_path / "results")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if not line.startswith("warning: ")]
    assert len(errors) == 1 and errors[0].startswith("error: ") and expected in errors[0], out.stderr
    assert not (tmp_path / "results").exists()
