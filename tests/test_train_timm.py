"""``model.type: timm`` training: train/eval parity, saved folder, and refused data.

A tiny random ``test_efficientnet`` (100k parameters, 48-px input set in its
``pretrained_cfg``) and a few generated PNGs keep every test to a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("timm")

from vembed_bench.errors import VembedError  # noqa: E402

CLASSES = ("red", "blue", "green")


def _timm_folder(folder: Path) -> Path:
    import timm
    import torch

    from vembed_bench.encoders.timm_encoder import save_timm_folder

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 48, 48), "crop_pct": 0.875}
    return save_timm_folder(model, folder)


def _images(root: Path, per_class: int = 4) -> list[dict[str, str]]:
    """Coloured noise PNGs of mixed sizes and modes (L, RGB, RGBA); one labels row each."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    base = {"red": (200, 40, 40), "blue": (40, 40, 200), "green": (40, 200, 40)}
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            size = (40 + 7 * i, 30 + 5 * c)
            noise = rng.normal(0, 40, (size[1], size[0], 3))
            pixels = np.clip(np.array(base[name]) + noise, 0, 255)
            image = Image.fromarray(pixels.astype(np.uint8), "RGB")
            image = [image, image.convert("L"), image.convert("RGBA")][i % 3]
            rel = f"img/{name}_{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            image.save(root / rel)
            rows.append({"query_image": rel, "label": name})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _recipe(model_dir: Path, train: Path, out: Path, **extra) -> dict:
    recipe = {
        "name": "timm-test",
        "output_dir": str(out),
        "model": {"path": str(model_dir), "type": "timm"},
        "data": {"train": str(train), "format": "labels"},
        "loss": {"name": "supcon", "temperature": 0.1},
        "training": {"max_steps": 3, "batch_size": 6, "lr": 1e-2, "warmup_ratio": 0.0,
                     "logger": "none", "save_every": 0},
    }
    for section, values in extra.items():
        recipe.setdefault(section, {}).update(values)
    return recipe


@pytest.fixture()
def setup(tmp_path):
    model = _timm_folder(tmp_path / "timm")
    data = tmp_path / "data"
    rows = _images(data)
    train = _write_jsonl(data / "train.jsonl", rows)
    return model, data, rows, train


def test_training_forward_matches_eval_encoder(setup):
    import torch

    from vembed_bench.data.types import Item
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.train.backends.timm_backend import TimmTrainable
    from vembed_bench.train.data import ImageInput

    model_dir, data, rows, _ = setup
    paths = [data / r["query_image"] for r in rows]
    encoder = load_encoder(str(model_dir), show_progress=False, num_workers=0)
    assert encoder.kind == "timm"
    expected = encoder.encode_documents([Item(id=p.name, image=p) for p in paths], batch_size=5)

    module = TimmTrainable(model_dir).eval()
    features = module.tokenize([ImageInput(str(p)) for p in paths])
    assert features["pixel_values"].shape[-2:] == (48, 48)  # the folder's pretrained_cfg, not 160
    with torch.no_grad():
        got = module(features)["sentence_embedding"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_train_run_saves_a_timm_folder_with_new_weights(setup, tmp_path):
    from safetensors.torch import load_file

    import vembed_bench
    from vembed_bench.encoders.loader import load_encoder

    model_dir, _, _, train = setup
    frozen = ["model.conv_stem", "model.bn1"]
    run = vembed_bench.train(
        _recipe(model_dir, train, tmp_path / "runs", model={"freeze": frozen}), progress=False
    )
    saved = Path(run.model_path)
    encoder = load_encoder(str(saved), show_progress=False)
    assert encoder.kind == "timm" and encoder.dim == 256
    base = load_file(str(model_dir / "model.safetensors"))
    tuned = load_file(str(saved / "model.safetensors"))
    assert set(tuned) <= set(base)
    changed = {k for k in tuned if not np.array_equal(base[k].numpy(), tuned[k].numpy())}
    assert any(k.startswith("blocks.") and k.endswith(".weight") for k in changed)
    # Frozen means frozen: the stem's weights and its BatchNorm running statistics are untouched.
    assert not {k for k in changed if k.startswith(("conv_stem.", "bn1."))}
    config = json.loads((saved / "config.json").read_text())
    assert config["pretrained_cfg"]["input_size"] == [3, 48, 48]  # the base folder's preprocessing


def test_lora_needs_target_modules_and_saves_merged(setup, tmp_path):
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.model import build_model, save_model

    model_dir, _, _, train = setup
    recipe = resolve_recipe(_recipe(model_dir, train, tmp_path / "runs", lora={"enabled": True}))
    with pytest.raises(VembedError, match="lora.target_modules is required"):
        build_model(recipe)
    recipe = resolve_recipe(recipe, {"lora.target_modules": ["conv_pwl"]})
    model = build_model(recipe)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    folder = save_model(model, tmp_path / "merged")
    assert load_encoder(str(folder), show_progress=False).kind == "timm"  # no peft keys left


def test_images_for_a_text_model_are_refused(setup, tmp_path):
    from train_helpers import tiny_st_folder

    import vembed_bench

    _, _, _, train = setup
    text_model = tiny_st_folder(tmp_path / "st")
    recipe = _recipe(text_model, train, tmp_path / "runs", model={"type": "sentence-transformers"})
    with pytest.raises(VembedError) as err:
        vembed_bench.train(recipe, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert "image inputs" in message and "embeds only text" in message and str(train) in message


def test_image_path_escaping_the_data_folder_is_refused(setup, tmp_path):
    import vembed_bench

    model_dir, data, rows, _ = setup
    (tmp_path / "x.png").write_bytes((data / rows[0]["query_image"]).read_bytes())
    bad = _write_jsonl(data / "bad.jsonl", rows[:1] + [{"query_image": "../x.png", "label": "red"}])
    with pytest.raises(VembedError) as err:
        vembed_bench.train(_recipe(model_dir, bad, tmp_path / "runs"), progress=False)
    message = str(err.value)
    assert f"{bad}:2" in message and "../x.png" in message and "outside" in message
    assert not (tmp_path / "runs" / "timm-test" / "model").exists()


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="apt dataset-fashion-mnist not installed")
def test_fashion_mnist_train_file_leaves_the_eval_task_unchanged(tmp_path):
    from vembed_bench.prepare.image_data import (
        FASHION_MNIST_CLASSES,
        prepare_fashion_mnist,
        read_idx,
        write_fashion_mnist_train,
    )

    plain = prepare_fashion_mnist(tmp_path / "plain", per_class=3, train_per_class=0)
    both = prepare_fashion_mnist(tmp_path / "both", per_class=3, train_per_class=2)
    assert not (plain / "train.jsonl").exists()
    for rel in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "card.yaml"] + [
        p.relative_to(plain).as_posix() for p in (plain / "images").rglob("*.png")
    ]:
        assert (plain / rel).read_bytes() == (both / rel).read_bytes(), rel
    rows = [json.loads(line) for line in (both / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and {r["label"] for r in rows} == set(FASHION_MNIST_CLASSES)
    labels = read_idx(FASHION / "train-labels-idx1-ubyte.gz")
    for row in rows:  # a train-split image, filed under (and labelled with) its own class
        index = int(Path(row["query_image"]).stem.split("_")[1])
        assert FASHION_MNIST_CLASSES[labels[index]] == row["label"]
        assert (both / row["query_image"]).is_file()
    # `exclude` (the eval sample's indices when it comes from the train split) is never drawn:
    # leave exactly two candidates per class and the sample must be those.
    keep = {int(i) for c in range(10) for i in np.flatnonzero(labels == c)[:2]}
    path = write_fashion_mnist_train(tmp_path / "ex", per_class=2,
                                     exclude=set(range(len(labels))) - keep)
    drawn = {int(Path(json.loads(line)["query_image"]).stem.split("_")[1])
             for line in path.read_text().splitlines()}
    assert drawn == keep


def test_resume_restores_batchnorm_running_statistics(setup, tmp_path):
    """A resumed run ends with the same BatchNorm statistics (buffers, not parameters) as a straight one."""
    import shutil

    import torch

    from vembed_bench.train.data import read_examples
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model

    model_dir, _, _, train = setup
    recipe = resolve_recipe(_recipe(model_dir, train, tmp_path / "runs",
                                    training={"max_steps": 4, "save_every": 2, "keep_checkpoints": 5}))
    examples = read_examples(recipe)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = build_model(recipe)
    fit(recipe, straight, examples, tmp_path / "a", progress=False)
    fit(recipe, build_model(recipe), examples, tmp_path / "b", progress=False)
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-0000004")  # killed after step 2
    resumed = build_model(recipe)
    assert fit(recipe, resumed, examples, tmp_path / "b", resume=True, progress=False).resumed_from == 2
    expected = dict(straight.named_buffers())
    stats = [n for n in expected if n.endswith("running_mean")]
    assert stats
    for name, buffer in resumed.named_buffers():
        torch.testing.assert_close(buffer, expected[name], atol=1e-6, rtol=0)
