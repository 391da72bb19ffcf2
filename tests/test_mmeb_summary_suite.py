"""`vembed-bench eval --task mmeb` end to end on all 36 MMEB datasets in the MMEB-eval parquet
layout, with a tiny random CLIP: the suite file and the leaderboard overview carry the VLM2Vec
breakdown (Precision@1 per meta-task, IND, OOD, Overall), checked against averages computed here.

Each query is an image whose candidate list holds its own image (plus other images): first when
the query should be a hit, second when it should be a miss. An image is always its own nearest
neighbour, so every dataset's Precision@1 is known from the fixture alone, whatever the weights.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from image_fixtures import write_image

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")
pytest.importorskip("transformers")

# The VLM2Vec table (Jiang et al., 2024, Table 1), written out here rather than read from the package.
GROUPS = {
    ("classification", True): "ImageNet-1K N24News HatefulMemes VOC2007 SUN397",
    ("classification", False): "Place365 ImageNet-A ImageNet-R ObjectNet Country211",
    ("vqa", True): "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W",
    ("vqa", False): "ScienceQA VizWiz GQA TextVQA",
    ("retrieval", True): "VisDial CIRR VisualNews_t2i VisualNews_i2t MSCOCO_t2i MSCOCO_i2t NIGHTS WebQA",
    ("retrieval", False): "OVEN FashionIQ EDIS Wiki-SS-NQ",
    ("grounding", True): "MSCOCO",
    ("grounding", False): "RefCOCO RefCOCO-Matching Visual7W-Pointing",
}
N_QUERIES = 4


def _write_mmeb(root: Path) -> dict[str, float]:
    """All 36 datasets; dataset i has (i % 5) hits out of 4 queries. Returns the expected P@1."""
    expected = {}
    datasets = [d for names in GROUPS.values() for d in names.split()]
    seed = 0
    for i, dataset in enumerate(datasets):
        hits = i % 5
        rows = []
        for q in range(N_QUERIES):
            own = f"{dataset}/q{q}.png"
            others = [f"{dataset}/q{q}_other{j}.png" for j in range(2)]
            for rel in (own, *others):
                write_image(root / "eval_images" / rel, seed, size=16)
                seed += 1
            targets = [own, *others] if q < hits else [others[0], own, others[1]]
            rows.append({"qry_text": "<|image_1|>", "qry_img_path": own,
                         "tgt_text": ["<|image_1|>"] * 3, "tgt_img_path": targets})
        (root / dataset).mkdir(parents=True)
        pd.DataFrame(rows).to_parquet(root / dataset / "test-00000-of-00001.parquet")
        expected[dataset] = hits / N_QUERIES
    return expected


@pytest.fixture
def one_thread():
    """72 tiny encodes: torch's thread pool costs more than the model on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _card(dataset: str) -> str:
    return "mmeb_" + re.sub(r"[^a-z0-9]", "_", dataset.lower())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_mmeb_suite_prints_stores_and_ranks_the_vlm2vec_breakdown(tmp_path: Path, one_thread: None) -> None:
    from tiny_image_models import make_clip
    from typer.testing import CliRunner

    from vembed_bench.cli import app
    from vembed_bench.results import load_result

    expected = _write_mmeb(tmp_path / "data" / "MMEB-eval")
    model = make_clip(tmp_path / "clip")
    results = tmp_path / "results"
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--task", "mmeb", "--model", str(model), "--data-root", str(tmp_path / "data"),
                              "--results-dir", str(results), "--cache", "off", "--no-progress", "--image-workers", "0",
                              "--model-name", "tiny-clip"])
    assert res.exit_code == 0, res.output

    # The member result files hold the per-dataset scores the fixture was built to give.
    for dataset, value in expected.items():
        member = load_result(next(results.glob(f"tiny-clip*/{_card(dataset)}/test.json")))
        assert member.scores["precision@1"] == pytest.approx(value), dataset

    by_hand = {meta: _mean([expected[d] for (m, _), names in GROUPS.items() if m == meta for d in names.split()])
               for meta in ("classification", "vqa", "retrieval", "grounding")}
    by_hand["ind"] = _mean([expected[d] for (_, ind), names in GROUPS.items() if ind for d in names.split()])
    by_hand["ood"] = _mean([expected[d] for (_, ind), names in GROUPS.items() if not ind for d in names.split()])
    by_hand["overall"] = _mean(list(expected.values()))
    assert len(set(by_hand.values())) > 3  # the fixture tells the groups apart

    suite = json.loads(next(results.glob("tiny-clip*/mmeb/test.suite.json")).read_text())
    assert suite["main_metric"] == "overall"
    assert suite["summary"]["name"] == "mmeb"
    for key, value in by_hand.items():
        assert suite["scores"][key] == pytest.approx(value), key
        assert suite["summary"]["scores"][key] == pytest.approx(value), key
    assert suite["summary"]["columns"]["vqa"] == "VQA"
    # Printed: the breakdown, x100, in the table's order.
    printed = res.output[res.output.index("mmeb summary"):]
    cells = re.findall(r"\d+\.\d\d", printed)
    assert cells == [f"{100 * by_hand[k]:.2f}" for k in ("classification", "vqa", "retrieval", "grounding",
                                                          "ind", "ood", "overall")]

    # Leaderboard overview: the suite's columns, not a plain "mmeb avg".
    out = tmp_path / "boards"
    res = runner.invoke(app, ["leaderboard", str(results), "--out", str(out), "--no-plots", "--no-html"])
    assert res.exit_code == 0, res.output
    lines = [line for line in (out / "README.md").read_text().splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    values = dict(zip(header, (c.strip().strip("*") for c in lines[2].strip("|").split("|"))))
    assert "mmeb avg" not in header
    labels = {"classification": "Classification", "vqa": "VQA", "retrieval": "Retrieval",
              "grounding": "Grounding", "ind": "IND", "ood": "OOD", "overall": "Overall"}
    for key, label in labels.items():
        assert values[f"mmeb {label}"] == f"{100 * by_hand[key]:.2f}", label
