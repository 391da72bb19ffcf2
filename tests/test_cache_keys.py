"""The embedding cache's keys cover everything that changes a vector.

Each case warms the cache, changes one thing (a prompt, the pooling, the max length, a
title, an image's bytes), re-runs ``evaluate`` against the warm cache, and expects a miss
for what changed and the score of a cold run with the same change (the cache off).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import write_beir
from tests.tiny_image_models import make_bert, make_dinov2
from tests.train_helpers import tiny_st_folder
from vembed_bench.evaluation import evaluate


@pytest.fixture(scope="module")
def st_model(tmp_path_factory) -> Path:
    return tiny_st_folder(tmp_path_factory.mktemp("st"), seed=3)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("bert") / "bert")


def _texts(root: Path, titles: bool = True) -> Path:
    corpus = [{"_id": f"d{i}", "title": f"title {i}" if titles else "", "text": f"body {i} of topic {i % 4}"}
              for i in range(16)]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 4} body {i}"} for i in range(8)]
    return write_beir(root, corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(8)]})


def _run(task: Path, model: Path, cache: Path | None, **options):
    return evaluate(str(task), str(model), cache="use" if cache else "off", cache_dir=cache, results_dir=None,
                    show_progress=False, device="cpu", k_values=[1, 5, 10], **options)


@pytest.mark.parametrize("change", [
    {"query_prompt": "query: "},
    {"document_prompt": "passage: "},
    {"max_length": 6},
])
def test_a_changed_encoder_option_misses_the_warm_cache(tmp_path, st_model, change):
    task, cache = _texts(tmp_path / "task"), tmp_path / "cache"
    warm = _run(task, st_model, cache)
    changed = _run(task, st_model, cache, **change)
    cold = _run(task, st_model, None, **change)
    assert changed.cache["misses"] >= 1 and changed.scores == cold.scores
    assert changed.model_info["fingerprint"] != warm.model_info["fingerprint"]
    again = _run(task, st_model, cache, **change)
    assert again.cache == {"policy": "use", "hits": 2, "misses": 0} and again.scores == cold.scores


def test_a_changed_pooling_misses_the_warm_cache(tmp_path, hf_model):
    task, cache = _texts(tmp_path / "task"), tmp_path / "cache"
    _run(task, hf_model, cache, model_type="hf", pooling="cls")
    mean = _run(task, hf_model, cache, model_type="hf", pooling="mean")
    cold = _run(task, hf_model, None, model_type="hf", pooling="mean")
    assert mean.cache["misses"] == 2 and mean.scores == cold.scores


def test_a_changed_title_misses_for_the_documents_only(tmp_path, st_model):
    task, cache = _texts(tmp_path / "task"), tmp_path / "cache"
    _run(task, st_model, cache)
    _texts(task, titles=False)  # same ids and texts, titles gone
    changed = _run(task, st_model, cache)
    cold = _run(task, st_model, None)
    assert changed.cache == {"policy": "use", "hits": 1, "misses": 1}  # queries hit, documents miss
    assert changed.scores == cold.scores


def _bmp(path: Path, seed: int) -> Path:
    """An uncompressed image: its size does not depend on its pixels."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path, "BMP")
    return path


def test_a_replaced_image_of_the_same_size_misses(tmp_path):
    import os

    model = make_dinov2(tmp_path / "dino")
    root = tmp_path / "images"
    corpus = [{"_id": f"i{n}", "image": f"img/{n}.bmp"} for n in range(6)]
    queries = [{"_id": f"i{n}", "image": f"img/{n}.bmp"} for n in range(6)]
    for n in range(6):
        _bmp(root / "img" / f"{n}.bmp", seed=n)
    write_beir(root, corpus, queries, {"test": [(f"i{n}", f"i{(n + 1) % 6}", 1) for n in range(6)]})
    cache = tmp_path / "cache"
    _run(root, model, cache)
    target = root / "img" / "2.bmp"
    stat = target.stat()
    replacement = _bmp(tmp_path / "other.bmp", seed=99)
    assert replacement.stat().st_size == stat.st_size  # same size: only the bytes differ
    shutil.copyfile(replacement, target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old modification time
    changed = _run(root, model, cache)
    cold = _run(root, model, None)
    assert changed.cache["misses"] == 2 and changed.scores == cold.scores
