"""``model.type: llm`` training on a tiny random Llama: the training forward embeds like the
eval encoder, a LoRA run saves a folder that ``load_encoder`` reproduces with no options
(``vembed_encoder.json`` + merged weights), and QLoRA without CUDA is refused in one line.

References are the eval encoder (:class:`LLMEncoder`, batched by length, its own padding)
and the saved folder loaded from disk, not the training module under test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

sys.path.insert(0, str(Path(__file__).parent.parent))
from tests.llm_fixtures import make_llm  # noqa: E402
from vembed_bench.data.types import Item  # noqa: E402
from vembed_bench.errors import VembedError  # noqa: E402
from vembed_bench.options import EncoderOptions  # noqa: E402

# Different lengths (padding matters); the last one is longer than max_length (truncation).
TEXTS = [
    "how do i sort a list in python",
    "what is the gil",
    "read file",
    "what is the global interpreter lock in python , how do i use sorted function with dict keys",
]
PROMPT = "Query : "


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with its word-level tokenizer inside the folder (as a real checkpoint has it)."""
    from transformers import AutoTokenizer

    folder = make_llm(tmp_path_factory.mktemp("llm") / "llama", "llama")
    AutoTokenizer.from_pretrained(folder / "tokenizer").save_pretrained(folder)
    return folder


def _recipe(folder: Path, pooling: str, **sections):
    from vembed_bench.train.recipe import recipe_from_dict

    data = {
        "name": "t",
        "model": {"path": str(folder), "type": "llm", "pooling": pooling, "bidirectional": True,
                  "max_length": 12},
        "data": {"train": "pairs.jsonl"},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return recipe_from_dict(data, base_dir=folder.parent)


def _train_forward(model, texts: list[str]) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(model.tokenize(texts))["sentence_embedding"].numpy()


@pytest.mark.parametrize("pooling", ["mean", "eos"])
def test_training_forward_equals_eval_encoder(llama: Path, pooling: str) -> None:
    from vembed_bench.encoders.llm_encoder import LLMEncoder
    from vembed_bench.train.model import build_model

    model = build_model(_recipe(llama, pooling))
    got = _train_forward(model, TEXTS)
    encoder = LLMEncoder(llama, EncoderOptions(pooling=pooling, attention="bidirectional", max_length=12,
                                               query_prompt="", show_progress=False))
    expected = encoder.encode_texts(TEXTS, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Bidirectional really is on in training: the causal encoder gives other vectors.
    causal = LLMEncoder(llama, EncoderOptions(pooling=pooling, max_length=12, query_prompt="", show_progress=False))
    assert np.abs(got - causal.encode_texts(TEXTS)).max() > 1e-3


def test_lora_run_saves_a_self_describing_folder(llama: Path, tmp_path: Path) -> None:
    from vembed_bench.encoders.llm_encoder import SETTINGS_FILE, LLMEncoder
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.train.data import read_examples
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model, eval_options, save_model

    pairs = tmp_path / "pairs.jsonl"
    docs = ["use sorted function", "global interpreter lock", "open with read", "dict keys values"]
    pairs.write_text("".join(json.dumps({"query": q, "positive": d}) + "\n"
                             for q, d in zip(TEXTS, docs)), encoding="utf-8")
    recipe = _recipe(
        llama, "mean",
        data={"train": str(pairs), "query_prompt": PROMPT},
        lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
        training={"epochs": 3, "batch_size": 4, "lr": 5e-2, "warmup_ratio": 0.0, "logger": "none"},
    )
    model = build_model(recipe)
    (tmp_path / "run").mkdir()
    fit(recipe, model, read_examples(recipe), tmp_path / "run", progress=False)
    queries = _train_forward(model, [PROMPT + t for t in TEXTS])
    documents = _train_forward(model, docs)
    folder = save_model(model, tmp_path / "run" / "model", prompts={"query": PROMPT})

    assert (tmp_path / "run" / "model-adapter" / "adapter_config.json").is_file()
    assert json.loads((folder / SETTINGS_FILE).read_text())["attention"] == "bidirectional"
    assert "vembed_bidirectional" not in (folder / "config.json").read_text()
    assert eval_options(recipe, tuned=True) == {}
    encoder = load_encoder(str(folder), show_progress=False)  # no options: the JSON gives them
    assert isinstance(encoder, LLMEncoder)
    assert (encoder.pooling, encoder.attention, encoder.max_length) == ("mean", "bidirectional", 12)
    items = [Item(id=str(i), text=t) for i, t in enumerate(TEXTS)]
    tuned_q = encoder.encode_queries(items, batch_size=3)
    np.testing.assert_allclose(tuned_q, queries, atol=1e-5)
    doc_items = [Item(id=f"d{i}", text=t) for i, t in enumerate(docs)]
    np.testing.assert_allclose(encoder.encode_documents(doc_items, batch_size=3), documents, atol=1e-5)
    # The merged weights carry the adapter: the base model, scored the way training embeds, differs.
    base = load_encoder(str(llama), show_progress=False, tokenizer=str(llama),
                        **eval_options(recipe, tuned=False))
    assert base.prompts["query"] == PROMPT
    assert np.abs(base.encode_queries(items) - tuned_q).max() > 1e-2
    # Explicit options still win over the folder's JSON.
    assert load_encoder(str(folder), pooling="last", show_progress=False).pooling == "last"


def test_qlora_without_cuda_and_bad_pooling_are_refused(llama: Path) -> None:
    from vembed_bench.train.model import build_model

    recipe = _recipe(llama, "mean", lora={"enabled": True, "load_in_4bit": True})
    with pytest.raises(VembedError, match="load_in_4bit") as err:
        build_model(recipe, device="cpu")
    assert "\n" not in str(err.value)
    with pytest.raises(VembedError, match="model.pooling 'cls'"):
        build_model(_recipe(llama, "cls"))


def test_bad_settings_file_names_the_file(llama: Path, tmp_path: Path) -> None:
    from vembed_bench.encoders.llm_encoder import SETTINGS_FILE, read_settings

    (tmp_path / SETTINGS_FILE).write_text('{"pooling": "mean", "pooler": "x"}')
    with pytest.raises(VembedError, match=f"{SETTINGS_FILE}: unknown key 'pooler'"):
        read_settings(tmp_path)
