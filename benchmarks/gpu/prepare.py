"""Build the two model folders the other parts use, with random weights (weights cannot travel).

* ``models/minilm``: all-MiniLM-L6-v2's architecture, tokenizer and sentence-transformers
  modules (mean pooling, normalize) from ``assets/minilm``; BERT weights drawn at random
  (the smoke run shrinks the BERT to 2 layers of 64).
* ``models/decoder``: a Qwen2 decoder of Qwen2.5-0.5B's shape (hidden 896, 24 layers,
  14 heads, 2 KV heads, MLP 4864) saved as ``Qwen2ForCausalLM`` (tied head) in bf16, with
  the same WordPiece tokenizer (vocabulary 30522, so the embedding table is smaller than
  Qwen's 151936; it is a lookup and costs no FLOPs) and sentence-transformers modules
  (mean pooling), so ``SentenceTransformer`` can load the same folder.

Throughput does not depend on the weight values; the smoke run uses a tiny decoder.
"""

from __future__ import annotations

import json
import shutil

from common import ASSETS, DECODER_SHAPE, TINY_BERT_SHAPE, TINY_DECODER_SHAPE, Part, table


def build_minilm(part: Part) -> dict:
    from transformers import BertConfig, BertModel

    folder = part.models / "minilm"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(ASSETS / "minilm", folder)
    part.torch.manual_seed(0)
    config = BertConfig.from_pretrained(folder, **(TINY_BERT_SHAPE if part.smoke else {}))
    model = BertModel(config, add_pooling_layer=True)
    model.save_pretrained(folder)  # float32, like the published checkpoint
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(
        json.dumps(
            {**json.loads(pooling.read_text()), "word_embedding_dimension": config.hidden_size}
        )
    )
    shape = {
        k: getattr(config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads")
    }
    return {
        "folder": str(folder),
        "parameters": sum(p.numel() for p in model.parameters()),
        "shape": shape,
    }


def build_decoder(part: Part) -> dict:
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    folder = part.models / "decoder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / "minilm")
    tokenizer.save_pretrained(folder)
    shape = TINY_DECODER_SHAPE if part.smoke else DECODER_SHAPE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        **shape,
    )
    part.torch.manual_seed(0)
    with part.torch.device(part.device):  # initialising 0.5B parameters is quick on the GPU
        model = Qwen2ForCausalLM(config)
    model.to(part.dtype).save_pretrained(folder)
    width = shape["hidden_size"]
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {
                    "idx": 0,
                    "name": "0",
                    "path": "",
                    "type": "sentence_transformers.models.Transformer",
                },
                {
                    "idx": 1,
                    "name": "1",
                    "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling",
                },
                {
                    "idx": 2,
                    "name": "2",
                    "path": "2_Normalize",
                    "type": "sentence_transformers.models.Normalize",
                },
            ],
            indent=1,
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 256, "do_lower_case": False})
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": width,
                "pooling_mode_mean_tokens": True,
            }
        )
    )
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())
    return {
        "folder": str(folder),
        "parameters": total,
        "non_embedding_parameters": total - embedding,
        "shape": shape,
        "vocab_size": len(tokenizer),
        "saved_dtype": str(part.dtype),
    }


def body(part: Part):
    part.models.mkdir(parents=True, exist_ok=True)
    minilm = build_minilm(part)
    part.log(f"MiniLM folder: {minilm['parameters'] / 1e6:.1f} M parameters")
    decoder = build_decoder(part)
    part.log(f"decoder folder: {decoder['parameters'] / 1e6:.1f} M parameters")
    md = table(
        ["model", "architecture", "parameters", "weights"],
        [
            [
                "minilm",
                f"all-MiniLM-L6-v2's BERT config and tokenizer {minilm['shape']}",
                f"{minilm['parameters'] / 1e6:.1f} M",
                "random, fp32",
            ],
            [
                "decoder",
                f"Qwen2 {decoder['shape']}",
                (
                    f"{decoder['parameters'] / 1e6:.1f} M "
                    f"({decoder['non_embedding_parameters'] / 1e6:.1f} M without the "
                    f"{decoder['vocab_size']}-row embedding)"
                ),
                f"random, {part.dtype_name}",
            ],
        ],
        left=2,
    )
    return "ok", md, {"minilm": minilm, "decoder": decoder}


if __name__ == "__main__":
    Part("prepare").run(body)
