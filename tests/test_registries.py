"""The five extension points, one registration style (vembed_bench.registry.Registry).

Each registry is exercised the way a plugin would use it: built-in entries are
found by name, an entry registered here is used by the public function
(load_encoder, load_task, build_loss / the recipe schema, search,
build_model's backend lookup), and bad names or options get one-line errors.
Values are checked against independent computations (numpy InfoNCE, numpy
top-k), never against the code under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from vembed_bench.data import load_task
from vembed_bench.data.cards import TaskCard
from vembed_bench.data.loading import LOADERS
from vembed_bench.data.types import Item, TaskData
from vembed_bench.encoders.loader import (
    MODEL_TYPES,
    ModelType,
    is_multivector_model,
    load_encoder,
    load_multivector_encoder,
    register_model_type,
)
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions
from vembed_bench.registry import Registry


def _restore(monkeypatch, registry: Registry) -> None:
    """Undo whatever a test registers (the registries are module-level singletons)."""
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def _bert_config_folder(path: Path, **extra) -> Path:
    """Only config.json: enough for detection, and a load would fail (no weights)."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"], **extra}))
    return path


# -- model types ---------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"attention": "bidirectional"}, "option(s) attention do not apply to hf models; they are for llm models"),
    ({"num_workers": 2, "skip_bad_images": True},
     "option(s) num_workers, skip_bad_images do not apply to hf models; they are for vision / timm / "
     "open_clip / clip models (--model-type vision)"),
    ({"processor": "p"}, "option(s) processor do not apply to hf models; they are for colvision / vlm models"),
])
def test_type_specific_options_are_refused_before_loading(tmp_path, options, message):
    folder = _bert_config_folder(tmp_path / "bert")
    with pytest.raises(VembedError) as err:
        load_encoder(folder, **options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_options_and_object_options_are_refused(tmp_path):
    with pytest.raises(VembedError, match="unknown encoder option 'atention'"):
        load_encoder(tmp_path, atention="bidirectional")

    class Model:
        def encode(self, texts):
            return np.ones((len(texts), 2))

    with pytest.raises(VembedError, match="apply to model folders"):
        load_encoder(Model(), pooling="mean")
    with pytest.raises(VembedError, match="apply to model folders"):
        load_encoder(Model(), EncoderOptions(num_workers=1))


def test_a_registered_model_type_is_detected_and_receives_typed_options(tmp_path, monkeypatch):
    _restore(monkeypatch, MODEL_TYPES)
    received = []

    class Constant:
        name = "constant"

        def __init__(self, source, options, *, folder):
            received.append((source, options, folder))

        def encode_queries(self, items, *, batch_size=32):
            return np.ones((len(items), 2), np.float32) / np.sqrt(2)

        encode_documents = encode_queries

        def fingerprint(self):
            return "constant"

        def describe(self):
            return {"type": "constant"}

    register_model_type(ModelType("constant", Constant, detect=lambda f: (f / "constant.json").is_file(),
                                  options=frozenset({"num_workers"})), first=True)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "constant.json").write_text("{}")
    encoder = load_encoder(folder, pooling="mean", num_workers=3)
    assert isinstance(encoder, Constant)
    source, options, got_folder = received[0]
    assert (source, got_folder) == (str(folder), folder)
    assert options == EncoderOptions(pooling="mean", num_workers=3)
    with pytest.raises(VembedError, match="attention do not apply to constant models"):
        load_encoder(folder, attention="causal")
    assert MODEL_TYPES.entry("CONSTANT").name == "constant"  # names are case-insensitive


def test_multi_vector_types_share_the_registry(tmp_path):
    colbert = _bert_config_folder(tmp_path / "colbert")
    (colbert / "colbert_linear.safetensors").write_bytes(b"")
    plain = _bert_config_folder(tmp_path / "plain")
    colpali = tmp_path / "colpali"
    colpali.mkdir()
    (colpali / "config.json").write_text(json.dumps({"model_type": "colpali"}))

    assert is_multivector_model(colbert) and is_multivector_model(str(colpali), EncoderOptions())
    assert not is_multivector_model(plain)
    assert is_multivector_model(plain, EncoderOptions(model_type="colbert"))
    assert is_multivector_model(plain, {"model_type": "PyLate"})  # the old mapping form, an alias
    assert not is_multivector_model(plain, EncoderOptions(model_type="hf"))
    assert not is_multivector_model("org/not-downloaded")
    assert [e.name for e in MODEL_TYPES.entries() if e.meta.get("multi_vector")] == ["colvision", "colbert"]
    with pytest.raises(VembedError, match="model type 'hf' is not multi-vector; choose one of colvision, colbert"):
        load_multivector_encoder(plain, model_type="hf")

    class Dense:
        def encode_queries(self, items, *, batch_size=32):
            return np.ones((len(items), 2), np.float32)

    with pytest.raises(VembedError, match="not a multi-vector encoder"):
        load_multivector_encoder(Dense())


# -- task loaders --------------------------------------------------------------------------------
def test_builtin_loaders_are_declared_and_custom_ones_are_used():
    assert {"beir", "sop", "karpathy", "beir_root", "mmeb", "mteb"} <= set(LOADERS.names())
    card = TaskCard(name="nope", loader="no_such_loader")
    with pytest.raises(VembedError, match="unknown loader 'no_such_loader'; known: beir, beir_root"):
        load_task(card)


def test_registered_loader_feeds_load_task(monkeypatch):
    _restore(monkeypatch, LOADERS)

    @LOADERS.register("three_docs")
    def three_docs(card: TaskCard, split: str) -> TaskData:
        corpus = [Item(f"d{i}", text=f"doc {i}") for i in range(3)]
        queries = [Item(f"q{i}", text=f"query {i}") for i in range(3)]
        return TaskData(name=card.name, split=split, queries=queries, corpus=corpus,
                        qrels={f"q{i}": {f"d{i}": 1} for i in range(3)})

    data = load_task(TaskCard(name="mine", loader="three_docs"), limit=2, seed=0)
    assert data.name == "mine" and len(data.queries) == 2 and len(data.corpus) == 3


def test_task_loading_never_imports_upward():
    code = ("import sys\nfrom vembed_bench.data.loading import LOADERS\n"
            "for name in ('beir', 'sop', 'karpathy', 'mmeb', 'mteb'):\n    LOADERS.get(name)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('vembed_bench.integrations', "
            "'vembed_bench.pipeline', 'vembed_bench.suites', 'mteb', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- losses --------------------------------------------------------------------------------------
def test_losses_are_built_from_the_registry_with_the_recipe_values():
    torch = pytest.importorskip("torch")
    from vembed_bench.train.losses import LOSSES, build_loss
    from vembed_bench.train.losses.base import EmbeddingBatch
    from vembed_bench.train.recipe import LossConfig

    assert LOSSES.names() == ["infonce", "supcon", "triplet", "cosent", "distill"]
    rng = np.random.default_rng(0)
    anchor, positive = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    loss = build_loss(LossConfig(name="infonce", temperature=0.1), gather=False)
    got = float(loss(EmbeddingBatch(torch.tensor(anchor), torch.tensor(positive))))
    a = anchor / np.linalg.norm(anchor, axis=1, keepdims=True)
    p = positive / np.linalg.norm(positive, axis=1, keepdims=True)
    logits = a @ p.T / 0.1
    expected = np.mean(np.log(np.exp(logits).sum(axis=1)) - np.diag(logits))
    assert got == pytest.approx(expected, rel=1e-6)
    assert build_loss(LossConfig(name="triplet", margin=0.3)).margin == 0.3
    assert build_loss(LossConfig(name="cosent", temperature=0.05)).scale == pytest.approx(20.0)


def test_a_registered_loss_is_accepted_by_the_recipe_schema(monkeypatch):
    from vembed_bench.train.losses import LOSSES, build_loss
    from vembed_bench.train.recipe import recipe_from_dict

    _restore(monkeypatch, LOSSES)
    base = {"name": "x", "model": {"path": "m"}, "data": {"train": "train.jsonl"}}
    with pytest.raises(VembedError, match="'loss.name'.*infonce, supcon, triplet, cosent, distill"):
        recipe_from_dict({**base, "loss": {"name": "halfway"}})

    class Halfway:
        def __init__(self, temperature):
            self.temperature = temperature

        @classmethod
        def from_config(cls, cfg, *, gather=True):
            return cls(cfg.temperature / 2)

    LOSSES.register("halfway", Halfway)
    recipe = recipe_from_dict({**base, "loss": {"name": "halfway", "temperature": 0.5}})
    assert build_loss(recipe.loss).temperature == 0.25


# -- search backends -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("numpy:gpu", "search backend 'numpy' runs on the CPU only, got device 'gpu'"),
    ("faiss:tpu", "search backend 'faiss' takes device cpu or gpu, got 'tpu'"),
    ("torch:tpu", "search backend 'torch' takes device cuda[:N] or cpu, got 'tpu'"),
    ("auto:cpu", "search backend 'auto' takes no device"),
    ("annoy", "unknown search backend 'annoy'; choose auto, faiss, torch, numpy"),
])
def test_backend_devices_are_validated_by_each_backend(name, message):
    from vembed_bench.search import resolve_backend

    if name.startswith("torch"):
        pytest.importorskip("torch")
    with pytest.raises(VembedError) as err:
        resolve_backend(name)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_registered_search_backend_is_resolved_by_name(monkeypatch):
    from vembed_bench.search import SEARCH_BACKENDS, SearchResult, available_backends, search

    _restore(monkeypatch, SEARCH_BACKENDS)

    class ArgsortBackend:
        """Full argsort per query: slow and plain, a reference of its own."""

        name = "argsort"

        @classmethod
        def available(cls):
            return False  # never picked by auto

        @classmethod
        def create(cls, device=None):
            return cls()

        def search(self, queries, corpus, k, *, index="flat", exclude=None, candidates=None, **options):
            scores = queries @ corpus.T
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return SearchResult(np.take_along_axis(scores, order, 1), order, self.name, index, True)

        def describe(self, index="flat"):
            return {"library": "numpy", "device": "cpu", "index": index, "exact": True}

    SEARCH_BACKENDS.register("argsort", ArgsortBackend)
    rng = np.random.default_rng(3)
    queries, corpus = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(40, 4)).astype(np.float32)
    mine = search(queries, corpus, 3, backend="argsort")
    assert mine.backend == "argsort"
    np.testing.assert_array_equal(mine.indices, search(queries, corpus, 3, backend="numpy").indices)
    assert "argsort" not in available_backends()


# -- training backends ---------------------------------------------------------------------------
def test_training_backends_are_modules_with_build_and_eval_options():
    from vembed_bench.train.model import TRAINING_BACKENDS, _backend

    assert TRAINING_BACKENDS.names() == ["timm", "composed", "llm", "vision", "clip", "vlm"]
    timm_backend = _backend("timm")
    assert timm_backend.__name__ == "vembed_bench.train.backends.timm_backend"
    assert callable(timm_backend.build) and callable(timm_backend.eval_options)
    with pytest.raises(VembedError, match="model.type 'colbert' cannot be trained; choose one of "
                                          "sentence-transformers, hf, timm, composed"):
        _backend("colbert")


def test_lazy_targets_are_imported_on_first_use():
    registry: Registry[object] = Registry("thing")
    registry.lazy("json", "json")
    registry.lazy("dumps", "json:dumps")
    assert registry.get("json") is json and registry.get("dumps") is json.dumps
    with pytest.raises(ValueError, match="module:attribute"):
        registry.lazy("bad", "json:")
    with pytest.raises(VembedError, match="unknown thing 'other'; choose one of json, dumps"):
        registry.get("other")
