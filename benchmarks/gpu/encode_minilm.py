"""Part 1a: all-MiniLM-L6-v2 (random weights) encoding, ours vs ``SentenceTransformer.encode``.

Same folder, texts, batch size, max length and dtype (bf16 on the GPU) for each contender:
``HFEncoder`` (our tokenize-once, length-sorted loop), ``STEncoder`` (sentence-transformers
behind our protocol) and ``SentenceTransformer.encode`` itself, alternated in rotating
order after one warm-up each. The ratio is taken within this run, on this GPU.
"""

from __future__ import annotations

from common import Part, alternate, bench_texts, encoder_flops, median, row_cosines, table


def body(part: Part):
    from sentence_transformers import SentenceTransformer

    from vembed_bench.data.types import Item
    from vembed_bench.encoders.loader import load_encoder

    n, batch, max_length = (
        part.sizes[k] for k in ("minilm_texts", "minilm_batch", "minilm_max_length")
    )
    folder = str(part.models / "minilm")
    texts, source = bench_texts(n)
    items = [Item(id=str(i), text=t) for i, t in enumerate(texts)]
    common = {
        "max_length": max_length,
        "device": part.device,
        "dtype": part.dtype_name,
        "show_progress": False,
    }
    ours_hf = load_encoder(folder, model_type="hf", pooling="mean", **common)
    ours_st = load_encoder(folder, model_type="sentence-transformers", **common)
    st = SentenceTransformer(folder, device=part.device, model_kwargs={"dtype": part.dtype})
    st.max_seq_length = max_length
    lengths = [
        len(ids) for ids in st.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    tokens = sum(lengths)
    flops = encoder_flops(ours_hf.model, lengths)
    part.log(
        f"{n} texts, {tokens} tokens (mean {tokens / n:.1f}), batch {batch}, "
        f"max_length {max_length}"
    )

    contenders = {
        "vembed-bench hf (HFEncoder)": lambda: ours_hf.encode_documents(items, batch_size=batch),
        "vembed-bench st (STEncoder)": lambda: ours_st.encode_documents(items, batch_size=batch),
        "SentenceTransformer.encode": lambda: st.encode(
            texts,
            batch_size=batch,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
    }
    times, outputs = alternate(part, contenders, part.sizes["repeats"])
    reference = median(times["SentenceTransformer.encode"])
    rows, data = (
        [],
        {
            "texts": n,
            "tokens": tokens,
            "batch": batch,
            "max_length": max_length,
            "dtype": part.dtype_name,
            "source": source,
            "flops": flops,
            "contenders": {},
        },
    )
    for name, seconds in times.items():
        mid = median(seconds)
        lo, mean = row_cosines(outputs[name], outputs["SentenceTransformer.encode"])
        rows.append(
            [
                name,
                f"{mid:.3f}",
                f"{min(seconds):.3f}",
                f"{n / mid:,.0f}",
                f"{tokens / mid:,.0f}",
                f"{flops / mid / 1e12:.1f}",
                f"{reference / mid:.2f}x",
                f"{lo:.5f} / {mean:.5f}",
            ]
        )
        data["contenders"][name] = {
            "seconds": seconds,
            "items_per_s": n / mid,
            "tokens_per_s": tokens / mid,
            "ratio_vs_st_encode": reference / mid,
            "cosine_min": lo,
            "cosine_mean": mean,
        }
    agree = all(c["cosine_min"] > 0.99 for c in data["contenders"].values())
    md = (
        f"{source}; {tokens:,} real tokens (mean {tokens / n:.1f}); batch {batch}, "
        f"max_length {max_length}, {part.dtype_name}; median of {part.sizes['repeats']} runs "
        "after a warm-up.\n\n"
        + table(
            [
                "contender",
                "median s",
                "best s",
                "items/s",
                "tokens/s",
                "model TFLOP/s",
                "speed vs ST encode",
                "cosine vs ST (min / mean)",
            ],
            rows,
        )
        + "\nEmbeddings agree with SentenceTransformer.encode (cosine > 0.99 on every row): "
        + f"**{'yes' if agree else 'NO'}**.\n"
    )
    return ("ok" if agree else "failed"), md, data


if __name__ == "__main__":
    Part("encode_minilm").run(body)
