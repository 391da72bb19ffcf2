"""Tiny random decoder LLM folders (Qwen2, Qwen3, Llama) with a word-level tokenizer.

Built from configs in a few hundred milliseconds, so unit tests need no downloads.
The tokenizer splits on whitespace and punctuation (``Query:`` -> ``Query``, ``:``),
which makes hand-computed token boundaries easy to check.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "Instruct Query Given a question retrieve passages that answer the how do i sort list "
    "in python use sorted function what is gil global interpreter lock dict keys values "
    "read file open with : , . ? \n"
).split()


def make_tokenizer(folder: Path) -> Path:
    """Save the word-level tokenizer in ``folder/tokenizer`` (its own folder: next to a
    Qwen2/Llama ``config.json``, AutoTokenizer would rebuild it as that family's BPE)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for word in WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.save_pretrained(folder / "tokenizer")
    return folder / "tokenizer"


def make_llm(folder: Path, family: str = "qwen2", seed: int = 0) -> Path:
    """Save a 2-layer random ``*ForCausalLM`` of ``family`` with the tokenizer into ``folder``."""
    import torch
    import transformers

    common = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  pad_token_id=0, eos_token_id=1)
    config_cls, model_cls = {
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "qwen3": (transformers.Qwen3Config, transformers.Qwen3ForCausalLM),
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    }[family]
    if family == "qwen3":
        common["head_dim"] = 8
    torch.manual_seed(seed)
    model = model_cls(config_cls(**common))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    make_tokenizer(folder)
    return folder


def make_gpt2(folder: Path, seed: int = 0) -> Path:
    """A random GPT-2 (absolute position embeddings: left padding must not shift them)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4, n_positions=128,
                                  bos_token_id=1, eos_token_id=1, pad_token_id=0)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    make_tokenizer(folder)
    return folder
