"""Image loading and the HF CLIP / SigLIP / vision-backbone encoders, on tiny random
models built from configs. Each encoder is checked against the same model run
directly through transformers (the reference), not against its own output."""

from __future__ import annotations

import numpy as np
import pytest
from image_fixtures import write_image, write_karpathy, write_sop
from PIL import Image
from tiny_image_models import make_clip, make_dinov2, make_siglip

from vembed_bench.data.types import Item
from vembed_bench.encoders.image_io import ImageStats, image_batches, open_image
from vembed_bench.encoders.loader import detect_model_type, load_encoder
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "clip": make_clip(root / "clip"),
        "siglip": make_siglip(root / "siglip"),
        "dinov2": make_dinov2(root / "dinov2"),
        "dinov2_reg": make_dinov2(root / "dinov2_reg", registers=4),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return [write_image(root / f"{i}.jpg", seed=i, size=20 + 7 * i) for i in range(5)]


def _norm(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_open_image_applies_exif_orientation_and_rgb(tmp_path):
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, :5] = 255  # a white band on the left
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "rot.jpg", exif=exif)
    upright = open_image(tmp_path / "rot.jpg")
    assert upright.mode == "RGB" and upright.size == (10, 30)
    top = np.asarray(upright)[:3].mean()  # the band ends up at the top after a 90 CW turn
    assert top > 200 and np.asarray(upright)[-3:].mean() < 50
    Image.new("LA", (4, 4)).save(tmp_path / "grey.png")
    Image.new("P", (4, 4)).save(tmp_path / "pal.png")
    assert open_image(tmp_path / "grey.png").mode == "RGB"
    assert open_image(tmp_path / "pal.png").mode == "RGB"


def test_bad_image_stops_with_path_and_row_or_is_counted(tmp_path, images):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    items = [Item("a", image=images[0]), Item("b", image=bad), Item("c", image=tmp_path / "gone.jpg")]
    to_tensor = lambda img: torch.zeros(3)  # noqa: E731
    with pytest.raises(VembedError, match=r"broken\.jpg \(item 'b', row 1\)"):
        list(image_batches(items, to_tensor, batch_size=2, num_workers=0))
    stats = ImageStats()
    got = list(image_batches(items, to_tensor, batch_size=2, num_workers=2, skip_bad_images=True, stats=stats))
    assert [p for positions, _ in got for p in positions] == [0]
    assert stats.skipped == 2 and stats.loaded == 1 and "gone.jpg" in stats.skipped_examples[1]


def test_clip_matches_transformers_reference(models, images):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    folder = models["clip"]
    assert detect_model_type(folder).name == "clip"
    encoder = load_encoder(str(folder), show_progress=False, num_workers=0)
    texts = ["a red bicycle", "two dogs playing in the snow on a sunny day"]
    mixed = [Item("t0", text=texts[0]), Item("i0", image=images[0]), Item("t1", text=texts[1]),
             Item("i1", image=images[1])]
    got = encoder.encode_queries(mixed, batch_size=1)

    model = AutoModel.from_pretrained(folder).eval()
    tok, proc = AutoTokenizer.from_pretrained(folder), AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        t = model.get_text_features(**tok(texts, padding=True, return_tensors="pt")).pooler_output
        pix = proc(images=[Image.open(p).convert("RGB") for p in images[:2]], return_tensors="pt")
        i = model.get_image_features(**pix).pooler_output
    expected = _norm(np.stack([t[0], i[0], t[1], i[1]]))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_siglip_pads_text_to_max_length(models):
    from transformers import AutoModel, AutoTokenizer

    folder = models["siglip"]
    encoder = load_encoder(str(folder), show_progress=False)
    got = encoder.encode_documents([Item("t", text="a cat")])
    model, tok = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        ids = tok(["a cat"], padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
        ref = model.get_text_features(input_ids=ids).pooler_output
        short = model.get_text_features(input_ids=tok(["a cat"], return_tensors="pt")["input_ids"]).pooler_output
    np.testing.assert_allclose(got, _norm(ref.numpy()), atol=1e-5)
    assert not np.allclose(got, _norm(short.numpy()), atol=1e-3)  # padding matters for SigLIP


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_vision_backbone_pooling_skips_register_tokens(models, images, pooling):
    from transformers import AutoImageProcessor, AutoModel

    folder = models["dinov2_reg"]
    assert detect_model_type(folder).name == "vision"
    encoder = load_encoder(str(folder), pooling=pooling, show_progress=False, num_workers=0)
    got = encoder.encode_documents([Item(str(i), image=p) for i, p in enumerate(images)], batch_size=2)
    model, proc = AutoModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        out = model(**proc(images=[Image.open(p).convert("RGB") for p in images], return_tensors="pt"))
    hidden = out.last_hidden_state.numpy()
    assert hidden.shape[1] == 1 + 4 + 16  # CLS + 4 registers + 4x4 patches
    ref = {"cls": hidden[:, 0], "mean": hidden[:, 5:].mean(axis=1), "pooler": out.pooler_output.numpy()}
    np.testing.assert_allclose(got, _norm(ref[pooling]), atol=1e-5)


def test_vision_model_refuses_text(models):
    encoder = load_encoder(str(models["dinov2"]), show_progress=False)
    with pytest.raises(VembedError, match="image-only"):
        encoder.encode_queries([Item("q", text="a cat")])


def test_flickr_and_sop_end_to_end_through_the_cli(models, tmp_path):
    from typer.testing import CliRunner

    from vembed_bench.cli import app
    from vembed_bench.results import load_result

    write_sop(tmp_path / "data", [(1, 1, "mug"), (2, 1, "mug"), (3, 2, "lamp"), (4, 2, "lamp")])
    write_karpathy(tmp_path / "data", [("1.jpg", "test", ["a mug", "a cup"]),
                                        ("2.jpg", "test", ["a lamp", "a light"])])
    runner = CliRunner()
    for task, model in (("sop", models["dinov2"]), ("flickr30k", models["clip"])):
        out = tmp_path / "results"
        res = runner.invoke(app, ["eval", "--task", task, "--model", str(model), "--data-root",
                                  str(tmp_path / "data"), "--results-dir", str(out), "--cache", "off",
                                  "--no-progress"])
        assert res.exit_code == 0, res.output
        files = list(out.rglob("test.json"))
        result = load_result(next(f for f in files if task.split("_")[0] in str(f)))
        assert 0 <= result.scores["hit@1"] <= 1
        assert result.task_info["meta"]["convention"]
    assert "rsum" in res.output
    suite_files = list((tmp_path / "results").rglob("test.suite.json"))
    assert len(suite_files) == 1 and suite_files[0].parent.name == "flickr30k"
    assert {f.parent.name for f in (tmp_path / "results").rglob("test.json")} == {
        "sop_i2i", "flickr30k_t2i", "flickr30k_i2t"}


def test_skipped_images_are_counted_once_in_the_result_file(models, tmp_path):
    from vembed_bench.data.data_root import use_data_root
    from vembed_bench.evaluation import evaluate

    folder = write_sop(tmp_path / "data", [(1, 1, "mug"), (2, 1, "mug"), (3, 2, "lamp"), (4, 2, "lamp")])
    broken = sorted((folder / "lamp_final").glob("*.JPG"))[0]
    broken.write_bytes(b"\xff\xd8 truncated")
    with use_data_root(tmp_path / "data"):
        with pytest.raises(VembedError, match=r"lamp_final/.*\.JPG \(item '3', row 2\)"):
            evaluate("sop", str(models["dinov2"]), cache="off", results_dir=None, show_progress=False,
                     num_workers=0)
        result = evaluate("sop", str(models["dinov2"]), cache="off", results_dir=None,
                          show_progress=False, num_workers=0, skip_bad_images=True)
    stats = result.model_info["encode_stats"]["images"]
    assert stats["skipped"] == 1 and stats["loaded"] == 3
    assert result.model_info["skip_bad_images"] is True
