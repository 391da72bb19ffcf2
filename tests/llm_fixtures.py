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


VL_WORDS = "a photo of cat dog red square represent the given image for classification find input retrieval .".split()


def make_tiny_vl(folder: Path) -> Path:
    """A tiny random Qwen2-VL (word-level tokenizer in ``folder/processor``) and two images."""
    import torch
    import transformers
    from PIL import Image
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"<pad>": 0, "<|endoftext|>": 1, "<unk>": 2, "<|vision_start|>": 3, "<|vision_end|>": 4,
             "<|image_pad|>": 5, "<|video_pad|>": 6}
    for word in VL_WORDS:
        vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|endoftext|>", unk_token="<unk>",
        additional_special_tokens=["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"])
    fast.image_token, fast.video_token = "<|image_pad|>", "<|video_pad|>"
    processor = transformers.Qwen2VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56),
        tokenizer=fast, video_processor=transformers.Qwen2VLVideoProcessor())
    processor.save_pretrained(folder / "processor")  # its own folder: see make_tokenizer
    cfg = transformers.Qwen2VLConfig(
        text_config=dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_scaling={"type": "mrope", "mrope_section": [1, 1, 2]}),
        vision_config=dict(depth=1, embed_dim=16, hidden_size=32, num_heads=2, mlp_ratio=2),
        image_token_id=5, video_token_id=6, vision_start_token_id=3, vision_end_token_id=4)
    torch.manual_seed(0)
    transformers.Qwen2VLForConditionalGeneration(cfg).save_pretrained(folder)
    Image.new("RGB", (56, 56), (200, 10, 10)).save(folder / "red.png")
    Image.new("RGB", (70, 42), (10, 10, 200)).save(folder / "blue.png")
    return folder
