"""Training HF vision backbones and CLIP-style dual encoders (tiny random models).

Parity is the point: the training forward must give what ``vembed-bench eval``
gives for the same inputs, and the saved folder must load back into the eval
encoder with the fine-tuned weights.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from image_fixtures import write_image
from tiny_image_models import make_clip, make_dinov2

from vembed_bench.data.types import Item
from vembed_bench.encoders.loader import load_encoder
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")

CAPTIONS = ["a red boat", "two dogs", "a green field", "a city at night", "a bowl of soup", "snow"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = []
    for i, caption in enumerate(CAPTIONS):
        write_image(root / "img" / f"{i}.png", seed=i, size=20 + 3 * i)
        rows.append({"query": caption, "positive_image": f"img/{i}.png", "label": f"c{i % 3}"})
    (root / "pairs.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("query", "positive_image")}) + "\n"
                                              for r in rows))
    (root / "labels.jsonl").write_text("".join(json.dumps({"query_image": r["positive_image"], "label": r["label"]})
                                               + "\n" for r in rows))
    return root


def _recipe(model_path, kind, data_file, tmp_path, **sections):
    recipe = {"name": f"{kind}-run", "output_dir": str(tmp_path / "runs"),
              "model": {"path": str(model_path), "type": kind, "max_length": 16},
              "data": {"train": str(data_file)},
              "loss": {"name": "infonce", "temperature": 0.1, "symmetric": True},
              "training": {"epochs": 2, "batch_size": 3, "lr": 1e-3, "logger": "none", "warmup_ratio": 0.0}}
    for key, value in sections.items():
        recipe.setdefault(key, {}).update(value)
    return recipe


def _embed(module, inputs):
    module.eval()
    with torch.no_grad():
        return module(module.tokenize(inputs))["sentence_embedding"].numpy()


def test_clip_training_forward_equals_eval_encoder_and_saved_folder_round_trips(tmp_path, data):
    import vembed_bench
    from vembed_bench.train.data import ImageInput
    from vembed_bench.train.model import build_model
    from vembed_bench.train.recipe import recipe_from_dict

    folder = make_clip(tmp_path / "clip")
    images = [data / "img" / f"{i}.png" for i in range(3)]
    mixed = [ImageInput(str(images[0])), CAPTIONS[0], ImageInput(str(images[1])), CAPTIONS[1]]
    items = [Item("i0", image=images[0]), Item("t0", text=CAPTIONS[0]), Item("i1", image=images[1]),
             Item("t1", text=CAPTIONS[1])]
    recipe = recipe_from_dict(_recipe(folder, "clip", data / "pairs.jsonl", tmp_path))
    module = build_model(recipe)
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    np.testing.assert_allclose(_embed(module, mixed), encoder.encode_documents(items), atol=1e-5)

    run = vembed_bench.train(_recipe(folder, "clip", data / "pairs.jsonl", tmp_path), progress=False)
    tuned = load_encoder(str(run.model_path), show_progress=False, num_workers=0)
    base_vectors, tuned_vectors = encoder.encode_documents(items), tuned.encode_documents(items)
    assert not np.allclose(base_vectors, tuned_vectors, atol=1e-4)  # training changed the model
    trained = build_model(recipe_from_dict(_recipe(run.model_path, "clip", data / "pairs.jsonl", tmp_path)))
    np.testing.assert_allclose(_embed(trained, mixed), tuned_vectors, atol=1e-5)


def test_vision_backbone_supcon_with_lora_saves_merged_weights(tmp_path, data):
    import vembed_bench

    folder = make_dinov2(tmp_path / "dinov2")
    recipe = _recipe(folder, "vision", data / "labels.jsonl", tmp_path,
                     model={"pooling": "mean"}, loss={"name": "supcon"},
                     lora={"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    run = vembed_bench.train(recipe, progress=False)
    assert (run.folder / "model-adapter" / "adapter_config.json").is_file()
    items = [Item(str(i), image=data / "img" / f"{i}.png") for i in range(4)]
    base = load_encoder(str(folder), pooling="mean", show_progress=False, num_workers=0)
    tuned = load_encoder(str(run.model_path), pooling="mean", show_progress=False, num_workers=0)
    assert type(tuned).__name__ == "VisionEncoder"
    assert not np.allclose(base.encode_documents(items), tuned.encode_documents(items), atol=1e-5)


def test_vision_backbone_refuses_text_inputs(tmp_path, data):
    import vembed_bench

    folder = make_dinov2(tmp_path / "dinov2")
    with pytest.raises(VembedError, match="has text inputs.*vision"):
        vembed_bench.train(_recipe(folder, "vision", data / "pairs.jsonl", tmp_path), progress=False)
