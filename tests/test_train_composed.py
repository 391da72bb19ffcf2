"""Training a composed image-text model (``model.type: composed``): projections, towers.

Tiny random towers (a 32-d BERT sentence-transformers folder and timm's
``test_efficientnet``) and generated PNGs. The eval encoder
(:class:`ComposedEncoder`) is the reference: what training optimises must be
what ``vembed-bench eval`` scores, before and after training.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from image_fixtures import write_image
from train_helpers import tiny_st_folder

from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

CAPTIONS = ["a red frog", "a blue car", "a green tree", "a yellow sun", "a black cat",
            "a white boat"]


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    from vembed_bench.encoders.timm_encoder import save_timm_folder

    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    image = save_timm_folder(model, root / "timm")
    return tiny_st_folder(root / "bert"), image


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """A pairs JSONL: caption -> its own random PNG (beside the file, the default image root)."""
    root = tmp_path_factory.mktemp("pairs")
    rows = [{"query": c, "positive_image": write_image(root / f"{i}.png", seed=i, size=40).name}
            for i, c in enumerate(CAPTIONS)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "pairs.jsonl"


def _recipe(towers, pairs, tmp_path, epochs=10, **model):
    from vembed_bench.train.recipe import recipe_from_dict

    text, image = towers
    section = {"type": "composed", "text_tower": str(text), "image_tower": str(image),
               "projection_dim": 16, "freeze": ["text", "image"], **model}
    return recipe_from_dict({
        "name": "composed", "output_dir": str(tmp_path / "runs"), "model": section,
        "data": {"train": str(pairs)},
        "loss": {"name": "infonce", "symmetric": True, "temperature": 0.05},
        "training": {"epochs": epochs, "batch_size": 6, "lr": 0.05, "warmup_ratio": 0.0,
                     "weight_decay": 0.0, "logger": "none"},
    })


def _inputs(pairs):
    """Every caption, then every image (as the training data reader gives them)."""
    from vembed_bench.train.data import read_examples
    from vembed_bench.train.recipe import recipe_from_dict

    examples = read_examples(recipe_from_dict({"name": "x", "model": {"path": "x"},
                                               "data": {"train": str(pairs)}}))
    return [ex.query for ex in examples] + [ex.positive for ex in examples]


def _eval_vectors(folder, recipe, inputs):
    """What ``vembed-bench eval`` gives: texts as queries, images as documents."""
    from vembed_bench.data.types import Item
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.train.backends.composed_backend import eval_options

    options = eval_options(recipe, tuned=True)
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0, **options)
    texts = [Item(f"t{i}", text=x) for i, x in enumerate(inputs) if isinstance(x, str)]
    images = [Item(f"i{i}", image=Path(x.path))
              for i, x in enumerate(inputs) if not isinstance(x, str)]
    return np.vstack([encoder.encode_queries(texts), encoder.encode_documents(images)])


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def test_training_forward_equals_the_composed_eval_encoder(towers, pairs, tmp_path):
    from vembed_bench.encoders.loader import detect_model_type
    from vembed_bench.train.backends.composed_backend import base_folder
    from vembed_bench.train.model import build_model, embed_inputs

    recipe = _recipe(towers, pairs, tmp_path)
    model = build_model(recipe)
    base = base_folder(recipe)
    assert base == recipe.run_dir / "base_model" and detect_model_type(base).name == "composed"
    inputs = _inputs(pairs)  # texts first, then images: the order _eval_vectors stacks them in
    n = len(CAPTIONS)
    mixed = [j for i in range(n) for j in (n + i, i)]  # image, text, image, ...: rows keep their place
    with torch.no_grad():
        got = embed_inputs(model, [inputs[j] for j in mixed], "cpu").numpy()
    np.testing.assert_allclose(got, _eval_vectors(base, recipe, inputs)[mixed], atol=1e-5)
    assert got.shape == (2 * n, 16)


def test_short_run_trains_only_the_projections_and_saves_a_composed_folder(towers, pairs, tmp_path):
    from safetensors.numpy import load_file

    from vembed_bench.encoders.loader import detect_model_type
    from vembed_bench.train.flow import run_training
    from vembed_bench.train.model import build_model, embed_inputs

    recipe = _recipe(towers, pairs, tmp_path)
    run = run_training(recipe, progress=False)
    base, tuned = recipe.run_dir / "base_model", run.model_path
    assert detect_model_type(tuned).name == "composed"
    before, after = (load_file(str(f / "projections.safetensors")) for f in (base, tuned))
    for key in ("text.weight", "image.weight"):
        assert before[key].shape == after[key].shape and not np.allclose(before[key], after[key])
    for tower, source in zip(("text", "image"), towers):
        files = _files(source)
        assert files == _files(tuned / tower)
        for rel in files:  # the towers are the base's, byte for byte
            original = (source / rel).read_bytes()
            assert (tuned / tower / rel).read_bytes() == original == (base / tower / rel).read_bytes()
    # A fresh module from the saved folder agrees with eval (training resumes from what eval sees).
    reloaded = build_model(_recipe(towers, pairs, tmp_path, text_tower="", image_tower="",
                                   projection_dim=None, path=str(tuned)))
    inputs = _inputs(pairs)
    with torch.no_grad():
        got = embed_inputs(reloaded, inputs, "cpu").numpy()
    np.testing.assert_allclose(got, _eval_vectors(tuned, recipe, inputs), atol=1e-5)
    # ... and the steps optimised the heads (random tiny towers give near-identical vectors, so the
    # loss falls from above chance towards it rather than far below).
    losses = [row["loss"] for row in run.fit.log_rows]
    assert len(losses) == 10 and losses[-1] < 0.6 * losses[0]


def test_frozen_towers_encode_each_distinct_input_once(towers, pairs, tmp_path):
    from vembed_bench.train.data import read_examples
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model, embed_inputs, save_model

    recipe = _recipe(towers, pairs, tmp_path)
    model = build_model(recipe)
    seen = {"text": 0, "image": 0}

    def count(key):
        def hook(module, args, kwargs, output):
            if key == "text":  # a SentenceTransformer(features) or a transformers model(**features)
                features = args[0] if args else kwargs
                seen[key] += features["input_ids"].shape[0]
            else:
                seen[key] += args[0].shape[0]  # timm model(pixels)
        return hook

    handles = [model.text.register_forward_hook(count("text"), with_kwargs=True),
               model.image.register_forward_hook(count("image"), with_kwargs=True)]
    examples = read_examples(recipe)
    summary = fit(recipe, model, examples, recipe.run_dir, progress=False)
    for handle in handles:
        handle.remove()
    assert summary.steps == 10  # 10 epochs of one batch: every input comes back 10 times
    n = len(CAPTIONS)
    assert seen == {"text": n, "image": n}
    assert {k: len(v) for k, v in model.memo.items()} == {"text": n, "image": n}
    # The trained module, saved, is what eval scores.
    saved = save_model(model, tmp_path / "saved")
    inputs = _inputs(pairs)
    with torch.no_grad():
        got = embed_inputs(model.eval(), inputs, "cpu").numpy()
    np.testing.assert_allclose(got, _eval_vectors(saved, recipe, inputs), atol=1e-5)


@pytest.mark.parametrize("model, key", [
    ({"image_tower": ""}, "'model.image_tower' is required"),
    ({"projection_dim": None}, "'model.projection_dim' is required"),
    ({"type": "auto"}, "set model.type: composed"),
    ({"path": "somewhere"}, "alternatives"),
    ({"projection_dim": 0}, "'model.projection_dim' must be >= 1"),
])
def test_half_configured_composed_recipe_is_refused_naming_the_key(towers, pairs, tmp_path, model,
                                                                   key):
    with pytest.raises(VembedError, match=key):
        _recipe(towers, pairs, tmp_path, **model)


def test_a_trainable_text_tower_trains_and_saves_like_eval(towers, pairs, tmp_path):
    """``model.freeze: [image]``: the text tower trains too; the saved folder scores the same."""
    from safetensors.numpy import load_file

    from vembed_bench.train.flow import run_training
    from vembed_bench.train.model import build_model, embed_inputs

    recipe = _recipe(towers, pairs, tmp_path, epochs=2, freeze=["image"])
    model = build_model(recipe).eval()
    inputs = _inputs(pairs)
    with torch.no_grad():
        got = embed_inputs(model, inputs, "cpu").numpy()
    base = recipe.run_dir / "base_model"
    np.testing.assert_allclose(got, _eval_vectors(base, recipe, inputs), atol=1e-5)
    assert model.memo.keys() == {"image"}  # only the frozen tower is memoised
    tuned = run_training(recipe, progress=False, overwrite=True).model_path
    before, after = (load_file(str(f / "model.safetensors")) for f in (towers[0], tuned / "text"))
    name = next(k for k in before if k.endswith("layer.0.attention.self.query.weight"))
    assert not np.allclose(before[name], after[name])  # the text tower moved ...
    image = towers[1]
    for rel in _files(image):  # ... the image tower did not
        assert (tuned / "image" / rel).read_bytes() == (image / rel).read_bytes()
    reloaded = build_model(_recipe(towers, pairs, tmp_path, text_tower="", image_tower="",
                                   projection_dim=None, path=str(tuned), freeze=["image"])).eval()
    with torch.no_grad():
        got = embed_inputs(reloaded, inputs, "cpu").numpy()
    np.testing.assert_allclose(got, _eval_vectors(tuned, recipe, inputs), atol=1e-5)


def test_a_trainable_tower_of_another_type_is_refused_with_what_to_do(towers, pairs, tmp_path):
    from tiny_image_models import make_bert

    from vembed_bench.train.model import build_model

    plain_hf = make_bert(tmp_path / "bert")  # eval loads it; only sentence-transformers trains
    with pytest.raises(VembedError, match=r"sentence-transformers folder; freeze it"):
        build_model(_recipe(towers, pairs, tmp_path, text_tower=str(plain_hf), freeze=["image"]))
