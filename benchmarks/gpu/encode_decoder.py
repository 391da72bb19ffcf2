"""Part 1b: a Qwen2.5-0.5B-shaped decoder (random weights): ``LLMEncoder`` vs plain baselines.

Same folder, texts, batch size, max length, dtype (bf16 on the GPU) and mean pooling:

* ``LLMEncoder`` (ours: tokenize once, length-sorted batches, left padding, positions
  counted over real tokens);
* a plain ``AutoModel`` forward + masked mean, batches in input order (what a first script does);
* the same plain loop on texts sorted by length (to separate batching from the rest);
* ``SentenceTransformer.encode`` on the same folder (Transformer + mean Pooling + Normalize).
"""

from __future__ import annotations

from common import Part, alternate, bench_texts, encoder_flops, median, row_cosines, table


def plain_encoder(part: Part, folder: str, texts: list[str], batch: int, max_length: int):
    """A function running the plain transformers loop over ``texts`` in a given order."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, dtype=part.dtype).to(part.device).eval()

    def run(order: list[int]) -> np.ndarray:
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch):
                idx = order[start : start + batch]
                enc = tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                ids, mask = enc["input_ids"].to(part.device), enc["attention_mask"].to(part.device)
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
                out[idx] = torch.nn.functional.normalize(pooled, dim=1).cpu().numpy()
        return out

    return run


def body(part: Part):
    from sentence_transformers import SentenceTransformer

    from vembed_bench.data.types import Item
    from vembed_bench.encoders.loader import load_encoder

    n, batch, max_length = (
        part.sizes[k] for k in ("decoder_texts", "decoder_batch", "decoder_max_length")
    )
    folder = str(part.models / "decoder")
    texts, source = bench_texts(n)
    items = [Item(id=str(i), text=t) for i, t in enumerate(texts)]
    ours = load_encoder(
        folder,
        model_type="llm",
        pooling="mean",
        max_length=max_length,
        device=part.device,
        dtype=part.dtype_name,
        show_progress=False,
    )
    plain = plain_encoder(part, folder, texts, batch, max_length)
    st = SentenceTransformer(folder, device=part.device, model_kwargs={"dtype": part.dtype})
    st.max_seq_length = max_length
    lengths = [len(ids) for ids in ours.tokenize(texts)["input_ids"]]
    tokens = sum(lengths)
    flops = encoder_flops(ours.model, lengths)
    part.log(
        f"{n} texts, {tokens} tokens (mean {tokens / n:.1f}), batch {batch}, "
        f"max_length {max_length}, attention {ours.attn_implementation}"
    )
    by_length = sorted(range(n), key=lambda i: -lengths[i])
    reference_name = "transformers forward + mean (input order)"
    contenders = {
        "vembed-bench llm (LLMEncoder, mean)": lambda: ours.encode_documents(
            items, batch_size=batch
        ),
        reference_name: lambda: plain(list(range(n))),
        "transformers forward + mean (length-sorted)": lambda: plain(by_length),
        "SentenceTransformer.encode": lambda: st.encode(
            texts,
            batch_size=batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
    }
    times, outputs = alternate(part, contenders, part.sizes["repeats"])
    reference = median(times[reference_name])
    st_time = median(times["SentenceTransformer.encode"])
    ours_out = outputs["vembed-bench llm (LLMEncoder, mean)"]
    rows, data = (
        [],
        {
            "texts": n,
            "tokens": tokens,
            "batch": batch,
            "max_length": max_length,
            "flops": flops,
            "dtype": part.dtype_name,
            "attn_implementation": ours.attn_implementation,
            "source": source,
            "contenders": {},
        },
    )
    for name, seconds in times.items():
        mid = median(seconds)
        lo, mean = row_cosines(ours_out, outputs[name])
        rows.append(
            [
                name,
                f"{mid:.3f}",
                f"{min(seconds):.3f}",
                f"{n / mid:,.0f}",
                f"{tokens / mid:,.0f}",
                f"{flops / mid / 1e12:.1f}",
                f"{reference / mid:.2f}x",
                f"{st_time / mid:.2f}x",
                f"{lo:.5f} / {mean:.5f}",
            ]
        )
        data["contenders"][name] = {
            "seconds": seconds,
            "items_per_s": n / mid,
            "tokens_per_s": tokens / mid,
            "ratio_vs_plain_input_order": reference / mid,
            "ratio_vs_st_encode": st_time / mid,
            "cosine_min": lo,
            "cosine_mean": mean,
        }
    agree = all(c["cosine_min"] > 0.99 for c in data["contenders"].values())
    md = (
        f"{source}; {tokens:,} real tokens (mean {tokens / n:.1f}); batch {batch}, "
        f"max_length {max_length}, {part.dtype_name}, attention `{ours.attn_implementation}`, "
        f"mean pooling; median of {part.sizes['repeats']} runs after a warm-up. Model TFLOP/s "
        "counts the linear layers and attention over real tokens only (padding is waste).\n\n"
        + table(
            [
                "contender",
                "median s",
                "best s",
                "items/s",
                "tokens/s",
                "model TFLOP/s",
                "speed vs plain (input order)",
                "speed vs ST encode",
                "cosine vs ours (min / mean)",
            ],
            rows,
        )
        + "\nEvery baseline's embeddings agree with ours (cosine > 0.99 on every row): "
        + f"**{'yes' if agree else 'NO'}**.\n"
    )
    return ("ok" if agree else "failed"), md, data


if __name__ == "__main__":
    Part("encode_decoder").run(body)
