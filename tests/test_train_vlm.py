"""``model.type: vlm`` training on a tiny random Qwen2-VL: the training forward embeds text,
image and image+text inputs like the eval encoder, and a LoRA run saves a folder that the
eval encoder loads with the fine-tuned weights."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest
from llm_fixtures import make_tiny_vl

from vembed_bench.data.types import Item

torch = pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    return make_tiny_vl(tmp_path_factory.mktemp("tinyvl_train"))


def _recipe(model, tmp_path, **extra):
    rows = [{"query": "red square", "query_image": "red.png", "positive": "a photo of cat"},
            {"query": "a photo of dog", "positive_image": "blue.png"},
            {"query": "find the given image", "positive": "red square"},
            {"query_image": "blue.png", "label": "x", "positive": "a photo of dog"}]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    recipe = {"name": "vl", "output_dir": str(tmp_path / "runs"),
              "model": {"path": str(model), "type": "vlm", "processor": str(model / "processor")},
              "data": {"train": str(data), "image_root": str(model)},
              "loss": {"name": "infonce", "temperature": 0.1},
              "training": {"epochs": 2, "batch_size": 3, "lr": 1e-2, "logger": "none", "warmup_ratio": 0.0},
              "lora": {"enabled": True, "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}}
    recipe.update(extra)
    return recipe


def test_vlm_training_forward_matches_eval_and_saved_folder_round_trips(tiny_vl, tmp_path):
    import vembed_bench
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.train.data import ImageInput
    from vembed_bench.train.model import build_model
    from vembed_bench.train.recipe import recipe_from_dict

    inputs = [ImageInput(str(tiny_vl / "red.png"), "red square"), "a photo of dog",
              ImageInput(str(tiny_vl / "blue.png"))]
    items = [Item("0", "red square", image=tiny_vl / "red.png"), Item("1", "a photo of dog"),
             Item("2", image=tiny_vl / "blue.png")]
    module = build_model(recipe_from_dict(_recipe(tiny_vl, tmp_path, lora={"enabled": False})))
    module.eval()
    with torch.no_grad():
        got = module(module.tokenize(inputs))["sentence_embedding"].numpy()
    base = load_encoder(str(tiny_vl), processor=tiny_vl / "processor", show_progress=False)
    np.testing.assert_allclose(got, base.encode_documents(items), atol=2e-5)

    run = vembed_bench.train(_recipe(tiny_vl, tmp_path), progress=False)
    assert (run.folder / "model-adapter" / "adapter_config.json").is_file()
    tuned = load_encoder(str(run.model_path), processor=tiny_vl / "processor", show_progress=False)
    assert type(tuned).__name__ == "VLMEncoder"
    assert not np.allclose(tuned.encode_documents(items), base.encode_documents(items), atol=1e-4)
