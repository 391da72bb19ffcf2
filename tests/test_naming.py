"""Display names: each rule of encoders/naming.py on small folders written here.

Expected names are written by hand from the files each test creates, so a rule
that reads the wrong field, or skips the wrong title, fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vembed_bench.encoders.naming import display_name, folder_display_name

ST_AUTO_CARD = """---
tags:
- sentence-transformers
base_model: org/base-model
model-index:
- name: SentenceTransformer based on org/base-model
  results: []
---

# SentenceTransformer based on org/base-model

This is a [sentence-transformers](https://www.SBERT.net) model finetuned from org/base-model.
"""


def folder(root: Path, rel: str, *, card: str | None = None, config: dict | None = None) -> Path:
    path = root / rel
    path.mkdir(parents=True)
    if card is not None:
        (path / "README.md").write_text(card, encoding="utf-8")
    if config is not None:
        (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def test_front_matter_model_name_wins(tmp_path):
    card = "---\nmodel_name: faq-embedder\nmodel-index:\n- name: other\n---\n# Heading\n"
    assert folder_display_name(folder(tmp_path, "runs/x/model", card=card)) == "faq-embedder"


def test_model_index_name(tmp_path):
    card = "---\nlicense: mit\nmodel-index:\n- name: bge-tiny-faq\n  results: []\n---\n# Heading\n"
    assert folder_display_name(folder(tmp_path, "m", card=card)) == "bge-tiny-faq"


def test_first_heading_outside_code_blocks(tmp_path):
    card = ("---\nlicense: mit\n---\nIntro text.\n\n```python\n# not a title\nprint(1)\n```\n\n"
            "## Usage\n\n# [Tiny Retriever](https://example.org) #\n\n# Second\n")
    assert folder_display_name(folder(tmp_path, "m", card=card)) == "Tiny Retriever"


def test_model_card_for_prefix_is_dropped(tmp_path):
    assert folder_display_name(folder(tmp_path, "m", card="# Model Card for e5-tiny\n")) == "e5-tiny"


@pytest.mark.parametrize("title", [
    "SentenceTransformer based on org/base-model", "SentenceTransformer", "PyLate model based on x/y",
    "Model Card for Model ID", "Model Card for {{ model_id }}",
])
def test_generic_titles_fall_through_to_the_folder(tmp_path, title):
    path = folder(tmp_path, "runs/faq-lr5/model", card=f"---\nlicense: mit\n---\n\n# {title}\n")
    assert folder_display_name(path) == "faq-lr5"


def test_sentence_transformers_auto_card_names_neither_itself_nor_its_base(tmp_path):
    path = folder(tmp_path, "runs/faq-lr5/final", card=ST_AUTO_CARD,
                  config={"_name_or_path": "org/base-model", "model_type": "bert"})
    assert folder_display_name(path) == "faq-lr5"


def test_config_hub_id(tmp_path):
    path = folder(tmp_path, "output", config={"_name_or_path": "acme/retriever-small"})
    assert folder_display_name(path) == "acme/retriever-small"


@pytest.mark.parametrize("value", ["/home/me/ckpt/step-9", "./local", "just-a-name", ""])
def test_config_paths_that_are_not_hub_ids_are_ignored(tmp_path, value):
    path = folder(tmp_path, "runs/probe/model", config={"_name_or_path": value})
    assert folder_display_name(path) == "probe"


def test_config_ignored_in_a_trainer_output(tmp_path):
    path = folder(tmp_path, "runs/ft-7/checkpoint-500", config={"_name_or_path": "acme/base"})
    (path / "trainer_state.json").write_text("{}")
    assert folder_display_name(path) == "ft-7"


@pytest.mark.parametrize("rel, expected", [
    ("runs/faq-lr5/model", "faq-lr5"),
    ("exp/minilm-ft/checkpoint-123", "minilm-ft"),
    ("exp/minilm-ft/checkpoints/checkpoint_4", "minilm-ft"),
    ("exp/siglip-run/best", "siglip-run"),
    ("exp/merge-a/merged", "merge-a"),
    ("exp/out-b/output", "out-b"),
    ("exp/final-c/final", "final-c"),
    ("exp/e5-small", "e5-small"),
])
def test_generic_folder_names_take_the_parent(tmp_path, rel, expected):
    assert folder_display_name(folder(tmp_path, rel)) == expected


def test_hub_cache_snapshot_is_its_repo_id(tmp_path):
    path = folder(tmp_path, "hub/models--acme--tiny-clip/snapshots/0123abcd",
                  config={"_name_or_path": "openai/clip-vit-base-patch32"})
    assert folder_display_name(path) == "acme/tiny-clip"


def test_relative_paths_and_hub_ids(tmp_path, monkeypatch):
    folder(tmp_path, "runs/faq-lr5/model")
    monkeypatch.chdir(tmp_path / "runs" / "faq-lr5" / "model")
    assert display_name(".") == "faq-lr5"
    assert display_name("../model/") == "faq-lr5"
    assert display_name("acme/retriever-small") == "acme/retriever-small"  # not a folder here: as given


def test_unreadable_files_only_skip_their_rule(tmp_path):
    path = folder(tmp_path, "runs/broken/model", card="---\nmodel_name: [unclosed\n---\n")
    (path / "config.json").write_text("{not json")
    assert folder_display_name(path) == "broken"


def test_encoders_default_to_the_display_name(tmp_path):
    """A real encoder loaded from runs/<name>/model is called <name>; --model-name still wins."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from tiny_image_models import minilm_folder

    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions

    path = tmp_path / "runs" / "faq-lr5" / "model"
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(minilm_folder()).save_pretrained(path)
    assert load_encoder(path, EncoderOptions(show_progress=False)).name == "faq-lr5"
    assert load_encoder(path, name="mine", show_progress=False).name == "mine"
    minilm = load_encoder(minilm_folder(), device="cpu", show_progress=False)
    assert minilm.name == "all-MiniLM-L6-v2"  # the shipped folder is called "model"; its card names it
