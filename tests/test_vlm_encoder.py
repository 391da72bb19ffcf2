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

WORDS = "a photo of cat dog red square represent the given image for classification find input retrieval .".split()


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path_factory.mktemp("tinyvl")
    vocab = {"<pad>": 0, "<|endoftext|>": 1, "<unk>": 2, "<|vision_start|>": 3, "<|vision_end|>": 4,
             "<|image_pad|>": 5, "<|video_pad|>": 6}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|endoftext|>", unk_token="<unk>",
        additional_special_tokens=["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    fast.image_token, fast.video_token = "<|image_pad|>", "<|video_pad|>"
    processor = transformers.Qwen2VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56),
        tokenizer=fast, video_processor=transformers.Qwen2VLVideoProcessor())
    processor.save_pretrained(folder / "processor")  # its own folder: see tests/llm_fixtures.py
    cfg = transformers.Qwen2VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2),
        image_token_id=5, video_token_id=6, vision_start_token_id=3, vision_end_token_id=4)
    torch.manual_seed(0)
    transformers.Qwen2VLForConditionalGeneration(cfg).save_pretrained(folder)
    Image.new("RGB", (56, 56), (200, 10, 10)).save(folder / "red.png")
    Image.new("RGB", (70, 42), (10, 10, 200)).save(folder / "blue.png")
    return folder


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
