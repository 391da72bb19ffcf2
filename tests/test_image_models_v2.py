"""SigLIP2 (NaFlex patch grids) and DINOv3 (register tokens, RoPE) on tiny random models,
each checked against the same model run directly through transformers, one image at a time."""

from __future__ import annotations

import numpy as np
import pytest
from image_fixtures import write_image
from PIL import Image
from tiny_image_models import make_dinov3, make_siglip2

from vembed_bench.data.types import Item
from vembed_bench.encoders.loader import detect_model_type, load_encoder

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images_v2")
    # Different sizes and aspect ratios: SigLIP2 gives each its own patch grid.
    return [write_image(root / f"{i}.jpg", seed=i, size=20 + 9 * i) for i in range(4)]


def _norm(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_siglip2_batched_images_equal_one_at_a_time_reference(tmp_path, images):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder = make_siglip2(tmp_path / "siglip2")
    assert detect_model_type(folder).name == "clip"
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    got = encoder.encode_documents([Item(str(i), image=p) for i, p in enumerate(images)], batch_size=3)
    texts = encoder.encode_queries([Item("t", text="a small red boat")])

    model, proc = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ref = [model.get_image_features(**proc(images=[Image.open(p).convert("RGB")], return_tensors="pt"))
               .pooler_output[0].numpy() for p in images]
        ids = tok(["a small red boat"], padding="max_length", truncation=True, max_length=16,
                  return_tensors="pt")
        ref_text = model.get_text_features(input_ids=ids["input_ids"],
                                           attention_mask=ids["attention_mask"]).pooler_output.numpy()
    np.testing.assert_allclose(got, _norm(np.stack(ref)), atol=1e-5)
    np.testing.assert_allclose(texts, _norm(ref_text), atol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dinov3_pooling_skips_register_tokens(tmp_path, images, pooling):
    from transformers import AutoImageProcessor, AutoModel

    folder = make_dinov3(tmp_path / "dinov3")
    assert detect_model_type(folder).name == "vision"
    encoder = load_encoder(str(folder), pooling=pooling, show_progress=False, num_workers=0)
    got = encoder.encode_documents([Item(str(i), image=p) for i, p in enumerate(images)], batch_size=2)
    model, proc = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        out = model(**proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt"))
    hidden = out.last_hidden_state.numpy()
    assert hidden.shape[1] == 1 + 4 + 16  # CLS + 4 registers + 4x4 patches
    ref = {"cls": hidden[:, 0], "mean": hidden[:, 5:].mean(axis=1)}
    np.testing.assert_allclose(got, _norm(ref[pooling]), atol=1e-5)
