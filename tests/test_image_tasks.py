"""SOP and Karpathy-Flickr loaders, data-root handling, and the metric conventions
of image retrieval (self-exclusion, multi-caption I2T, ties), checked against
values computed by hand from hand-chosen embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from image_fixtures import VectorEncoder, angle, write_karpathy, write_sop

from vembed_bench.data import load_task, resolve_card
from vembed_bench.data.data_root import ENV_VAR, use_data_root
from vembed_bench.errors import VembedError
from vembed_bench.evaluation import evaluate

# Angles (degrees) of the SOP test images; classes: A = 1,2,3  B = 4,5  C = 6 (alone).
SOP_ANGLES = {"1": 0, "2": 47, "3": 105, "4": 20, "5": 200, "6": 250}
SOP_ROWS = [(1, 1, "bicycle"), (2, 1, "bicycle"), (3, 1, "bicycle"),
            (4, 2, "chair"), (5, 2, "chair"), (6, 3, "chair")]


@pytest.fixture
def sop_root(tmp_path):
    write_sop(tmp_path, SOP_ROWS)
    write_sop(tmp_path, [(1, 9, "mug"), (2, 9, "mug")], split="train")
    return tmp_path


def _run(task, encoder, root, tmp_path, ks, split=None):
    with use_data_root(root):
        return evaluate(task, encoder, k_values=ks, split=split, cache="off",
                        results_dir=tmp_path / "results", show_progress=False)


def test_sop_layout_and_alias(sop_root):
    with use_data_root(sop_root):
        card = resolve_card("sop")
        assert card.name == "sop_i2i"
        data = load_task(card)
    assert data.exclude_self
    assert [q.id for q in data.queries] == ["1", "2", "3", "4", "5"]  # 6 is alone in its class
    assert data.skipped_queries == 1
    assert len(data.corpus) == 6
    assert data.qrels["1"] == {"2": 1, "3": 1} and data.qrels["4"] == {"5": 1}
    assert data.corpus[0].image.name == "111085122801_0.JPG"
    assert data.corpus[0].image.parent.name == "bicycle_final"


def test_sop_self_exclusion_against_hand_values(sop_root, tmp_path):
    encoder = VectorEncoder({k: angle(v) for k, v in SOP_ANGLES.items()})
    result = _run("sop", encoder, sop_root, tmp_path, [1, 3, 10])
    # Rankings without the query itself (worked out from the angles):
    # q1: 4,2,3,6,5  q2: 4,1,3,5,6  q3: 2,4,5,1,6  q4: 1,2,3,6,5  q5: 6,3,2,1,4
    s = result.scores
    assert s["hit@1"] == pytest.approx(1 / 5)
    assert s["hit@3"] == pytest.approx(3 / 5)
    assert s["mrr@10"] == pytest.approx((1 / 2 + 1 / 2 + 1 + 1 / 5 + 1 / 5) / 5)
    assert s["map@10"] == pytest.approx((7 / 12 + 7 / 12 + 3 / 4 + 1 / 5 + 1 / 5) / 5)
    assert "never itself" in result.task_info["meta"]["convention"]


def test_sop_matches_brute_force_reference(sop_root, tmp_path):
    rng = np.random.default_rng(3)
    vectors = {k: rng.normal(size=8) for k in SOP_ANGLES}
    result = _run("sop_i2i", VectorEncoder(vectors), sop_root, tmp_path, [1, 2])
    classes = {str(i): c for i, c, _ in SOP_ROWS}
    hits = []
    for q in ["1", "2", "3", "4", "5"]:
        v = vectors[q] / np.linalg.norm(vectors[q])
        others = sorted((k for k in vectors if k != q),
                        key=lambda k: -float(v @ (vectors[k] / np.linalg.norm(vectors[k]))))
        hits.append(classes[others[0]] == classes[q])
    assert result.scores["hit@1"] == pytest.approx(np.mean(hits))


def test_sop_train_split(sop_root):
    with use_data_root(sop_root):
        data = load_task(resolve_card("sop"), "train")
    assert data.qrels == {"1": {"2": 1}, "2": {"1": 1}}


FLICKR = [
    ("1000092795.jpg", "test", ["Two young guys are outside.", "Two men in green shirts.",
                                "Two friends enjoy time spent together."]),
    ("10002456.jpg", "test", ["Several men in hard hats.", "Workers look down from up above.",
                              "Two men working on a machine."]),
    ("1000268201.jpg", "train", ["A child in a pink dress."]),
]
# Image a = first test image, b = second.
A, B = "1000092795.jpg", "10002456.jpg"
I2T_VECTORS = {
    A: angle(0), A + "#0": angle(90), A + "#1": angle(30), A + "#2": angle(120),
    B: angle(180), B + "#0": angle(10), B + "#1": angle(200), B + "#2": angle(250),
}


@pytest.fixture
def flickr_root(tmp_path):
    write_karpathy(tmp_path, FLICKR)
    return tmp_path


def test_karpathy_layout(flickr_root):
    with use_data_root(flickr_root):
        t2i = load_task(resolve_card("flickr30k_t2i"))
        i2t = load_task(resolve_card("flickr30k_i2t"))
    assert [d.id for d in t2i.corpus] == [A, B]  # the train image is left out
    assert len(t2i.queries) == 6 and t2i.queries[1].text == "Two men in green shirts."
    assert t2i.qrels[B + "#2"] == {B: 1}
    assert i2t.qrels[A] == {A + "#0": 1, A + "#1": 1, A + "#2": 1}
    assert i2t.queries[0].image.parent.name == "flickr30k-images"
    assert "any of its captions" in i2t.meta["convention"]


def test_i2t_multi_caption_against_hand_values(flickr_root, tmp_path):
    result = _run("flickr30k_i2t", VectorEncoder(I2T_VECTORS), flickr_root, tmp_path, [1, 2, 3])
    # a: b#0, a#1, a#0, b#2, a#2, b#1     b: b#1, a#2, b#2, a#0, a#1, b#0
    s = result.scores
    assert s["hit@1"] == pytest.approx(0.5)   # only b has a caption first
    assert s["hit@2"] == pytest.approx(1.0)   # any caption within 2 counts
    assert s["recall@3"] == pytest.approx(2 / 3)  # share of captions: 2/3 for both
    assert s["mrr@3"] == pytest.approx(0.75)


@pytest.mark.parametrize("b_first", [False, True])
def test_t2i_ties_go_to_the_lower_corpus_position(tmp_path, b_first):
    rows = [FLICKR[1], FLICKR[0]] if b_first else FLICKR[:2]
    write_karpathy(tmp_path, rows)
    vectors = dict(I2T_VECTORS)
    vectors.update({A: [1, 0], B: [-1, 0], A + "#0": [0, 1]})  # a#0 scores exactly 0 with both
    result = _run("flickr30k_t2i", VectorEncoder(vectors), tmp_path, tmp_path, [1, 2])
    per_query = dict(zip(result.per_query.query_ids, result.per_query.per_query["hit@1"]))
    assert per_query[A + "#0"] == (0.0 if b_first else 1.0)


def test_missing_data_root_says_what_to_download(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(VembedError, match=r"Stanford_Online_Products\.zip.*--data-root"):
        load_task(resolve_card("sop"))
    with use_data_root(tmp_path), pytest.raises(VembedError, match="dataset_flickr30k.json not found"):
        load_task(resolve_card("flickr30k_t2i"))


def test_sop_errors_name_file_and_line(tmp_path):
    folder = write_sop(tmp_path, SOP_ROWS[:2])
    ebay = folder / "Ebay_test.txt"
    lines = ebay.read_text().splitlines()
    ebay.write_text("\n".join(lines[:2] + ["3 1 1 bicycle_final/missing.JPG"]) + "\n")
    with use_data_root(tmp_path), pytest.raises(VembedError, match=r"Ebay_test.txt:3: image"):
        load_task(resolve_card("sop"))
    ebay.write_text("\n".join(lines[:2] + ["3 1 1 ../../etc/passwd"]) + "\n")
    with use_data_root(tmp_path), pytest.raises(VembedError, match="outside the dataset root"):
        load_task(resolve_card("sop"))
    ebay.write_text("id class path\n")
    with use_data_root(tmp_path), pytest.raises(VembedError, match="Ebay_test.txt:1: expected the header"):
        load_task(resolve_card("sop"))


def test_flickr30k_suite_reports_rsum(flickr_root, tmp_path):
    import json

    with use_data_root(flickr_root):
        with pytest.raises(VembedError, match="is a suite of several tasks"):
            load_task(resolve_card("flickr30k"))
        suite = evaluate("flickr30k", VectorEncoder(I2T_VECTORS), cache="off",
                         results_dir=tmp_path / "res", show_progress=False)
    t2i, i2t = suite.members["flickr30k_t2i"], suite.members["flickr30k_i2t"]
    expected = 100 * sum(r.scores[f"hit@{k}"] for r in (t2i, i2t) for k in (1, 5, 10))
    assert suite.main_metric == "rsum" and suite.main_score == pytest.approx(expected)
    # I2T from the hand-worked rankings: hit@1 = 1/2, hit@5 = hit@10 = 1.
    assert suite.scores["flickr30k_i2t/hit@1"] == pytest.approx(0.5)
    assert suite.scores["flickr30k_i2t/hit@5"] == 1.0
    record = json.loads(suite.default_path(tmp_path / "res").read_text())
    assert record["scores"]["rsum"] == pytest.approx(expected)
    assert "any of its captions" in record["member_conventions"]["flickr30k_i2t"]


def test_retrieval_grid_frames_hits_green_and_misses_red(sop_root, tmp_path):
    from PIL import Image

    from vembed_bench.report.grid import BORDER, GREEN, RED, TILE

    encoder = VectorEncoder({k: angle(v) for k, v in SOP_ANGLES.items()})
    with use_data_root(sop_root):
        result = evaluate("sop", encoder, k_values=[1, 5], cache="off", grid=5,
                          results_dir=tmp_path / "results", show_progress=False)
    png = result.default_path(tmp_path / "results").with_suffix(".grid.png")
    grid = Image.open(png).convert("RGB")
    step = TILE + 2 * BORDER
    assert grid.size == (6 * step, 5 * step)
    # Hand-worked rankings (see test_sop_self_exclusion_against_hand_values):
    # q1 (class A = 1,2,3): 4,2,3,6,5   q4 (class B = 4,5): 1,2,3,6,5
    expected = {0: [RED, GREEN, GREEN, RED, RED], 3: [RED, RED, RED, RED, GREEN]}
    for row, colours in expected.items():
        got = [grid.getpixel((col * step + 1, row * step + 1)) for col in range(1, 6)]
        assert got == [tuple(c) for c in colours]
