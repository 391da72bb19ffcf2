"""Part 5: ``make_bidirectional`` on the GPU (sdpa, and flash_attention_2 when importable), in bf16.

For each attention implementation, on the decoder of ``prepare.py``, first as loaded (causal),
then after ``make_bidirectional``:

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


def body(part: Part):
    from vembed_bench.encoders.bidirectional import is_bidirectional, make_bidirectional
    from vembed_bench.encoders.llm_encoder import load_causal_lm

    folder = str(part.models / "decoder")
    batch, length = part.sizes["bidir_batch"], part.sizes["bidir_length"]
    rows, data, ok, notes = [], {}, True, []
    for impl in ("sdpa", "flash_attention_2"):
        if impl == "flash_attention_2" and (
            not part.cuda or importlib.util.find_spec("flash_attn") is None
        ):
            why = "flash-attn is not installed" if part.cuda else "no CUDA device"
            notes.append(f"`flash_attention_2`: **skipped** ({why}).")
            data[impl] = {"skipped": why}
            continue
        _, model = load_causal_lm(folder, dtype=part.dtype_name, attn_implementation=impl)
        model.to(part.device).eval()
        vocab = model.config.vocab_size
        flops = encoder_flops(model, [length] * batch)
        found = {}
        for mode in ("causal", "bidirectional"):
            if mode == "bidirectional":
                make_bidirectional(model)
            c = checks(part, model, vocab)
            c["seconds"] = forward_seconds(part, model, vocab)
            c["implementation"] = str(model.config._attn_implementation)
            c["is_bidirectional"] = is_bidirectional(model)
            part.log(f"{impl} {mode}: {c}")
            found[mode] = c
        causal_ok = (
            found["causal"]["earlier_max_change"] <= 1e-3 * found["causal"]["last_max_change"]
        )
        bidir_ok = found["bidirectional"]["earlier_relative"] > 1e-2
        pads_ok = all(found[m]["padding_relative_error"] < 2e-2 for m in found)
        ok &= causal_ok and bidir_ok and pads_ok
        for mode, c in found.items():
            verdict = {"causal": causal_ok, "bidirectional": bidir_ok}[mode]
            rows.append(
                [
                    impl,
                    mode,
                    f"`{c['implementation']}`",
                    f"{c['earlier_max_change']:.2e}",
                    f"{c['last_max_change']:.2e}",
                    "yes" if verdict else "NO",
                    f"{c['padding_relative_error']:.1e}",
                    f"{c['seconds'] * 1e3:.1f}",
                    f"{flops / c['seconds'] / 1e12:.1f}",
                ]
            )
        data[impl] = found
        del model
        if part.cuda:
            part.torch.cuda.empty_cache()
    md = (
        f"Decoder of prepare.py in {part.dtype_name}. Later-token test: 4 rows x 64 random "
        "tokens, only the last token changed; 'earlier change' is the largest change of any "
        "earlier position's hidden state (causal must be 0 or rounding, bidirectional must "
        f"move). Padding test: the same rows with {PADS} left pads, relative error on the real "
        f"tokens. Forward: {batch} x {length} tokens, median of {part.sizes['bidir_repeats']}.\n\n"
        + table(
            [
                "implementation",
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
            left=3,
        )
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
        + "\nBidirectional really is bidirectional, causal stays causal, padding stays masked: "
        + f"**{'yes' if ok else 'NO'}**.\n"
    )
    return ("ok" if ok else "failed"), md, data


if __name__ == "__main__":
    Part("bidirectional").run(body)
