"""VLM embedder on a tiny random Qwen2-VL: the VLM2Vec prompt layout, last-token pooling
checked against a direct single-item forward pass, and batching with left padding."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from vembed_bench.data.types import Item

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llm_fixtures import make_tiny_vl

    return make_tiny_vl(tmp_path_factory.mktemp("tinyvl"))


def _reference(folder: Path, prompt: str, image: Path | None) -> np.ndarray:
    from PIL import Image

    processor = transformers.AutoProcessor.from_pretrained(folder / "processor")
    model = transformers.AutoModel.from_pretrained(folder).eval()
    images = [Image.open(image).convert("RGB")] if image else None
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    with torch.no_grad():
        h = model(**inputs).last_hidden_state[0, -1].numpy()
    return h / np.linalg.norm(h)


def test_vlm2vec_layout_last_token_and_batching(tiny_vl: Path) -> None:
    from vembed_bench.encoders.loader import detect_model_type, load_encoder
    from vembed_bench.encoders.vlm_encoder import VLMEncoder

    assert detect_model_type(tiny_vl).name == "vlm"
    enc = load_encoder(str(tiny_vl), processor=tiny_vl / "processor", instruction="find the given image .",
                       show_progress=False)
    assert isinstance(enc, VLMEncoder)
    queries = [Item("q1", "red square", image=tiny_vl / "red.png"), Item("q2", "a photo of a dog"),
               Item("q3", "", image=tiny_vl / "blue.png", instruction="represent the image")]
    got = enc.encode_queries(queries, batch_size=3)
    expected_prompts = [
        "<|vision_start|><|image_pad|><|vision_end|>\nfind the given image . red square",
        "find the given image . a photo of a dog",
        "<|vision_start|><|image_pad|><|vision_end|>\nrepresent the image",
    ]
    for row, prompt, item in zip(got, expected_prompts, queries):
        np.testing.assert_allclose(row, _reference(tiny_vl, prompt, item.image), atol=2e-5)
    docs = enc.encode_documents([Item("d", "red square", image=tiny_vl / "red.png")])
    np.testing.assert_allclose(docs[0], _reference(tiny_vl, "<|vision_start|><|image_pad|><|vision_end|>\nred square",
                                                   tiny_vl / "red.png"), atol=2e-5)
    assert enc.describe()["layout"] == "vlm2vec" and enc.dim == 32
