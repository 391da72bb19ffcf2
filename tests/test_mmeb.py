"""MMEB: a fixture in the MMEB-eval parquet layout, per-query candidate lists that differ,
shared candidates encoded once, and the meta-task / IND / OOD averages by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from vembed_bench.data.mmeb import DATASETS, card_name, mmeb_summary, mmeb_table
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

VOCAB = ["cat", "dog", "bird", "fish", "red", "blue"]


class WordEncoder:
    """Embeds an item as the one-hot of the vocabulary words in its text and image file name."""

    name = "words"

    def __init__(self) -> None:
        self.documents_seen: list[str] = []

    def _rows(self, items: Sequence[Item]) -> np.ndarray:
        out = np.zeros((len(items), len(VOCAB)), dtype=np.float32)
        for r, item in enumerate(items):
            words = item.text.split() + ([item.image.stem] if item.image is not None else [])
            for w in words:
                if w in VOCAB:
                    out[r, VOCAB.index(w)] += 1
            out[r] += 1e-3 * np.arange(len(VOCAB))  # no zero rows, deterministic
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._rows(items)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        self.documents_seen.extend(i.id for i in items)
        return self._rows(items)

    def fingerprint(self) -> str:
        return "words"

    def describe(self) -> dict[str, Any]:
        return {"type": "words"}


def _write(root: Path) -> Path:
    from PIL import Image

    images = root / "eval_images" / "Toy"
    images.mkdir(parents=True)
    for name in ("cat", "dog", "bird"):
        Image.new("RGB", (4, 4), (10, 20, 30)).save(images / f"{name}.png")
    folder = root / "Toy"
    folder.mkdir()
    rows = [
        # q0: image of a cat; correct = "cat" (first); the best global match "cat" is in its list -> hit
        {"qry_text": "<|image_1|>\nRepresent the given image for classification", "qry_img_path": "Toy/cat.png",
         "tgt_text": ["cat", "dog", "bird"], "tgt_img_path": ["", "", ""]},
        # q1: about a dog, but its list lacks "dog": correct is "fish" (first), "bird" scores like fish -> tie by id
        {"qry_text": "dog red", "qry_img_path": "",
         "tgt_text": ["fish", "red bird", "blue"], "tgt_img_path": ["", "", ""]},
        # q2: text asks for a bird, correct (first) is the cat image: miss, the bird image is in its list
        {"qry_text": "bird", "qry_img_path": "",
         "tgt_text": ["", "", "dog"], "tgt_img_path": ["Toy/cat.png", "Toy/bird.png", ""]},
    ]
    pd.DataFrame(rows).to_parquet(folder / "test-00000-of-00001.parquet")
    return root


def test_per_query_candidates_shared_encoding_and_precision(tmp_path: Path) -> None:
    from vembed_bench.data.cards import TaskCard
    from vembed_bench.evaluation import evaluate

    root = _write(tmp_path / "MMEB-eval")
    card = TaskCard(name="mmeb_toy", loader="mmeb", params={"dataset": "Toy", "path": str(root)},
                    main_metric="precision@1", k_values=[1])
    encoder = WordEncoder()
    result = evaluate(card, encoder, cache="off", results_dir=None, show_progress=False)
    # q0: cat query (image stem 'cat') -> 'cat' (index 0): hit.
    # q1: 'dog red' within [fish, red bird, blue]: 'red bird' shares 'red' -> top, but correct is fish: miss.
    #     Globally 'dog' would win, which is not in q1's list: scoring must not pick it.
    # q2: 'bird' within [cat.png, bird.png, dog]: bird.png wins, correct is cat.png: miss.
    assert list(result.per_query.per_query["precision@1"]) == [1.0, 0.0, 0.0]
    assert result.scores["precision@1"] == pytest.approx(1 / 3)
    # 'dog' text appears in two lists and 'cat.png' is not the same item as text 'cat': 8 distinct candidates
    assert len(encoder.documents_seen) == len(set(encoder.documents_seen)) == 8
    assert result.task_info["per_query_candidates"] is True
    assert result.task_info["n_queries"] == 3


def test_loader_errors_name_the_problem(tmp_path: Path) -> None:
    from vembed_bench.data import load_task
    from vembed_bench.data.cards import TaskCard

    root = _write(tmp_path / "MMEB-eval")
    with pytest.raises(VembedError, match="no parquet files"):
        load_task(TaskCard(name="x", loader="mmeb", params={"dataset": "Nope", "path": str(root)}))
    pd.DataFrame([{"qry_text": "a", "qry_img_path": "../../etc/passwd", "tgt_text": ["a"],
                   "tgt_img_path": [""]}]).to_parquet(root / "Toy" / "test-00000-of-00001.parquet")
    with pytest.raises(VembedError, match="outside the dataset root"):
        load_task(TaskCard(name="x", loader="mmeb", params={"dataset": "Toy", "path": str(root)}))


def test_meta_task_averages_by_hand() -> None:
    assert len(DATASETS) == 36
    assert sum(ind for _, ind in DATASETS.values()) == 20
    scores = {"ImageNet-1K": 0.5, "Place365": 0.3, card_name("OK-VQA"): 0.2, "RefCOCO": 0.9, "MSCOCO": 0.7}
    s = mmeb_summary(scores)
    assert s["classification"] == pytest.approx(0.4)
    assert s["vqa"] == pytest.approx(0.2)
    assert s["retrieval"] is None
    assert s["grounding"] == pytest.approx(0.8)
    assert s["ind"] == pytest.approx((0.5 + 0.2 + 0.7) / 3)
    assert s["ood"] == pytest.approx((0.3 + 0.9) / 2)
    assert s["overall"] == pytest.approx(2.6 / 5)
    table = mmeb_table({"toy": scores})
    assert "| toy | 40.0 (2/10) | 20.0 (1/10) | - | 80.0 (2/4) |" in table
    with pytest.raises(VembedError):
        mmeb_summary({"NotADataset": 1.0})
