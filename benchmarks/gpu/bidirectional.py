"""Part 5: ``make_bidirectional`` on the GPU (sdpa, and flash_attention_2 when importable).

For each attention implementation, on the decoder of ``prepare.py`` in bf16 and again in
float32 (where rounding cannot hide a masking bug), first as loaded (causal), then after
``make_bidirectional``:

* later-token test: change only the last token of each row; in causal mode no earlier
  position may change, in bidirectional mode earlier positions must change;
* padding test: a left-padded row (positions counted over real tokens, as ``LLMEncoder``
  does) must give the same hidden states on its real tokens as the row without padding,
  so padding stays masked in both modes;
* a timed forward (batch x length, no padding, all-ones mask) in each mode.
"""

from __future__ import annotations

import importlib.util

from common import Part, encoder_flops, median, table

PADS = 8


def hidden(model, ids, mask):
    positions = (mask.cumsum(dim=1) - 1).clamp_min(0)
    return model(
        input_ids=ids, attention_mask=mask, position_ids=positions
    ).last_hidden_state.float()


def checks(part: Part, model, vocab: int) -> dict:
    torch = part.torch
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(1000, vocab, (4, 64), generator=gen).to(part.device)
    mask = torch.ones_like(ids)
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % vocab
    with torch.inference_mode():
        a, b = hidden(model, ids, mask), hidden(model, changed, mask)
        earlier = float((a[:, :-1] - b[:, :-1]).abs().max())
        last = float((a[:, -1] - b[:, -1]).abs().max())
        padded = torch.cat([torch.zeros_like(ids[:, :PADS]), ids], dim=1)
        pad_mask = torch.cat([torch.zeros_like(ids[:, :PADS]), mask], dim=1)
        p = hidden(model, padded, pad_mask)[:, PADS:]
        pad_error = float((p - a).norm() / a.norm())
    return {
        "earlier_max_change": earlier,
        "last_max_change": last,
        "earlier_relative": earlier / last if last else float("nan"),
        "padding_relative_error": pad_error,
    }


def forward_seconds(part: Part, model, vocab: int) -> float:
    torch = part.torch
    batch, length, repeats = (
        part.sizes[k] for k in ("bidir_batch", "bidir_length", "bidir_repeats")
    )
    gen = torch.Generator(device="cpu").manual_seed(1)
    ids = torch.randint(1000, vocab, (batch, length), generator=gen).to(part.device)
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        for _ in range(3):
            hidden(model, ids, mask)
        return median([part.timed(lambda: hidden(model, ids, mask))[0] for _ in range(repeats)])


def measure(part: Part, folder: str, impl: str, dtype: str, timed: bool) -> dict:
    """Both modes of one implementation in one dtype: checks, and forward times when ``timed``."""
    from vembed_bench.encoders.bidirectional import is_bidirectional, make_bidirectional
    from vembed_bench.encoders.llm_encoder import load_causal_lm

    _, model = load_causal_lm(folder, dtype=dtype, attn_implementation=impl)
    model.to(part.device).eval()
    vocab = model.config.vocab_size
    found = {}
    for mode in ("causal", "bidirectional"):
        if mode == "bidirectional":
            make_bidirectional(model)
        c = checks(part, model, vocab)
        c["seconds"] = forward_seconds(part, model, vocab) if timed else None
        c["implementation"] = str(model.config._attn_implementation)
        c["is_bidirectional"] = is_bidirectional(model)
        part.log(f"{impl} {dtype} {mode}: {c}")
        found[mode] = c
    found["flops"] = encoder_flops(model, [part.sizes["bidir_length"]] * part.sizes["bidir_batch"])
    del model
    if part.cuda:
        part.torch.cuda.empty_cache()
    return found


def body(part: Part):
    folder = str(part.models / "decoder")
    batch, length = part.sizes["bidir_batch"], part.sizes["bidir_length"]
    # The measured dtype (bf16 on the GPU), plus float32 where rounding cannot hide a mask bug.
    dtypes = list(dict.fromkeys([part.dtype_name, "float32"]))
    rows, data, ok, notes = [], {}, True, []
    for impl in ("sdpa", "flash_attention_2"):
        if impl == "flash_attention_2" and (
            not part.cuda or importlib.util.find_spec("flash_attn") is None
        ):
            why = "flash-attn is not installed" if part.cuda else "no CUDA device"
            notes.append(f"`flash_attention_2`: **skipped** ({why}).")
            data[impl] = {"skipped": why}
            continue
        data[impl] = {}
        for dtype in dtypes if impl != "flash_attention_2" else [part.dtype_name]:
            found = measure(part, folder, impl, dtype, timed=dtype == part.dtype_name)
            data[impl][dtype] = found
            for mode in ("causal", "bidirectional"):
                c = found[mode]
                later = (c["earlier_relative"] <= 1e-3) == (mode == "causal")
                pads = dtype != "float32" or c["padding_relative_error"] <= 1e-4
                ok &= later and pads
                seconds = c["seconds"]
                rows.append(
                    [
                        impl,
                        dtype,
                        mode,
                        f"`{c['implementation']}`",
                        f"{c['earlier_max_change']:.2e}",
                        f"{c['last_max_change']:.2e}",
                        "yes" if later else "NO",
                        f"{c['padding_relative_error']:.1e}" + ("" if pads else " (NO)"),
                        f"{seconds * 1e3:.1f}" if seconds else "-",
                        f"{found['flops'] / seconds / 1e12:.1f}" if seconds else "-",
                    ]
                )
    md = (
        "Decoder of prepare.py. Later-token test: 4 rows x 64 random tokens, only the last token "
        "changed; 'earlier change' is the largest change of any earlier position's hidden state, "
        "which must be at most 1e-3 of the last position's change in causal mode and more than "
        f"that when bidirectional. Padding test: the same rows with {PADS} left pads (positions "
        "counted over real tokens), relative error on the real tokens; it must be <= 1e-4 in "
        "float32 (bf16 rows are rounding, shown for reference). Forward: "
        f"{batch} x {length} tokens in {part.dtype_name}, median of {part.sizes['bidir_repeats']}."
        "\n\n"
        + table(
            [
                "implementation",
                "dtype",
                "mode",
                "registered as",
                "earlier change",
                "last-token change",
                "as expected",
                "padding rel. error",
                "forward ms",
                "model TFLOP/s",
            ],
            rows,
            left=4,
        )
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
        + "\nBidirectional really is bidirectional, causal stays causal, padding stays masked: "
        + f"**{'yes' if ok else 'NO'}**.\n"
    )
    return ("ok" if ok else "failed"), md, data


if __name__ == "__main__":
    Part("bidirectional").run(body)
