"""Helpers for the training tests: a tiny random BERT saved as a sentence-transformers folder."""

from __future__ import annotations

import shutil
from pathlib import Path


def tiny_st_folder(folder: Path, *, dropout: float = 0.0, seed: int = 0) -> Path:
    """A 2-layer, 32-d random BERT with MiniLM's real tokenizer, mean pooling and Normalize."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    from vembed_bench.demo import demo_model_path

    hf = folder / "hf"
    hf.mkdir(parents=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (demo_model_path() / name).is_file():
            shutil.copy(demo_model_path() / name, hf / name)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(hf)
    transformer = Transformer(str(hf), max_seq_length=32)
    model = SentenceTransformer(
        modules=[transformer, Pooling(32, pooling_mode="mean"), Normalize()], device="cpu"
    )
    out = folder / "st"
    model.save(str(out))
    return out
