"""Part 6: ``--batch-size auto`` on a real device: halving on out-of-memory, the memo, same vectors.

The decoder (Qwen2.5-0.5B-shaped) encodes texts with ``batch_size="auto"`` through the same
``encode_items`` the evaluation uses, with this process's CUDA memory capped (weights + 2 GiB)
so that the first sizes really run out of memory. A second copy of the model (loaded before the
cap, like the first) then starts from the memo (no halving), and a fixed batch of half the size found gives the same vectors
(cosine > 0.99 on every row; bf16 rows vary slightly with batch composition). On CPU (smoke) the
size comes from the available RAM and only the vectors are compared.
"""

from __future__ import annotations

from common import Part, bench_texts, row_cosines, table

HEADROOM_GIB = 2.0


def body(part: Part):
    from vembed_bench.data.types import Item
    from vembed_bench.encoders import batching
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.evaluation.stages import VectorMemo, encode_items

    n, max_length = part.sizes["auto_texts"], part.sizes["decoder_max_length"]
    texts, source = bench_texts(n)
    items = [Item(id=str(i), text=t) for i, t in enumerate(texts)]

    def load():
        return load_encoder(str(part.models / "decoder"), model_type="llm", pooling="mean",
                            max_length=max_length, device=part.device, dtype=part.dtype_name,
                            show_progress=False)

    def encode(encoder, batch_size):
        return part.timed(lambda: encode_items(encoder, VectorMemo(), items, "document", False, batch_size))

    # Both copies are loaded before the cap, so the second one's weights do not eat into the
    # headroom the first one's size was found in (the first GPU run, without this, halved the
    # second copy once more: the tuner was right, the check was not).
    first, second = load(), load()
    cap = None
    if part.cuda:
        torch = part.torch
        total = torch.cuda.get_device_properties(0).total_memory
        cap = (torch.cuda.memory_allocated() + HEADROOM_GIB * 2**30) / total
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap))
        part.log(f"CUDA memory capped to {cap:.4f} of {total / 2**30:.1f} GiB")
    seconds, auto = encode(first, "auto")
    found = batching.tuner_for(first, "auto").info()
    part.log(f"auto: {found} in {seconds:.2f} s")
    seconds_memo, again = encode(second, "auto")
    remembered = batching.tuner_for(second, "auto").info()
    part.log(f"second copy: {remembered} in {seconds_memo:.2f} s")
    fixed_size = max(1, found["batch_size"] // 2)
    seconds_fixed, fixed = encode(first, fixed_size)
    lo, mean = row_cosines(auto, fixed)
    lo_again, _ = row_cosines(again, fixed)
    memo_ok = remembered["source"] == "memo" and remembered["halvings"] == 0 if part.cuda else True
    ok = lo > 0.99 and lo_again > 0.99 and memo_ok and auto.shape == (n, fixed.shape[1])
    rows = [
        ["auto (first run)", found["batch_size"], found["source"], found["halvings"], f"{seconds:.2f}"],
        ["auto (second copy)", remembered["batch_size"], remembered["source"], remembered["halvings"],
         f"{seconds_memo:.2f}"],
        [f"fixed {fixed_size}", fixed_size, "fixed", 0, f"{seconds_fixed:.2f}"],
    ]
    md = (
        f"{n} texts ({source}), max_length {max_length}, {part.dtype_name}"
        + (f", CUDA memory capped to weights + {HEADROOM_GIB} GiB" if cap else "") + ".\n\n"
        + table(["run", "batch size", "from", "halvings", "seconds"], rows)
        + f"\nauto vs fixed cosine min / mean {lo:.5f} / {mean:.5f}; second copy started from the memo: "
        + f"**{'yes' if memo_ok else 'NO'}**.\n"
    )
    data = {"texts": n, "cap_fraction": cap, "first": found, "second": remembered, "fixed": fixed_size,
            "seconds": {"first": seconds, "second": seconds_memo, "fixed": seconds_fixed},
            "cosine_min": lo, "cosine_mean": mean}
    return ("ok" if ok else "failed"), md, data


if __name__ == "__main__":
    Part("auto_batch").run(body)
