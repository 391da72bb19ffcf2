"""Part 4: 20 QLoRA steps through vembed-bench's training code (``build_model`` + ``fit``).

The recipe is ``trainers/embedrag_text_qlora.yaml`` with the decoder folder of ``prepare.py``,
a training JSONL made from the shipped CPython FAQ (question, its answer, 3 other answers as
negatives, EmbedRAG format), a fixed number of steps, no evaluation and no logger. The data
is limited to one batch, so every step sees the same examples: the base has random weights,
so on fresh batches the loss only wanders around chance, while on one batch it must fall
if gradients flow through the (4-bit) base into the LoRA weights. QLoRA
(a 4-bit NF4 base) needs CUDA and bitsandbytes; without them the same steps run as plain
LoRA (bf16 autocast on a GPU, fp32 on the CPU) and QLoRA is reported as skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random

from common import FAQ, ROOT, Part, median, table


def write_training_jsonl(path) -> int:
    """EmbedRAG rows from the FAQ qrels (train and test); returns how many were written.

    Each row: ``{"query": question, "pos": [its answer], "neg": [3 other answers]}``.
    """
    docs, queries = {}, {}
    for line in (FAQ / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            docs[row["_id"]] = f"{row.get('title', '')} {row['text']}".strip()
    for line in (FAQ / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            queries[row["_id"]] = row["text"]
    rng = random.Random(0)
    ids = sorted(docs)
    rows = []
    for split in ("train", "test"):
        for line in (FAQ / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            qid, did, score = line.split("\t")
            if int(score) > 0 and qid in queries and did in docs:
                negatives = rng.sample([d for d in ids if d != did], 3)
                rows.append(
                    {"query": queries[qid], "pos": [docs[did]], "neg": [docs[d] for d in negatives]}
                )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def body(part: Part):
    import yaml

    from vembed_bench.train.data import read_examples
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.preflight import check_inputs
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model

    torch = part.torch
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    quantize = part.cuda and has_bnb
    why_not = (
        None
        if quantize
        else (
            "no CUDA device"
            if not part.cuda
            else "bitsandbytes is not importable (carry its wheel in .whl/)"
        )
    )
    data_path = part.work / "faq_embedrag.jsonl"
    n_rows = write_training_jsonl(data_path)
    steps, batch, chunk, max_length = (
        part.sizes[k] for k in ("train_steps", "train_batch", "train_chunk", "train_max_length")
    )
    raw = yaml.safe_load(
        (ROOT / "trainers" / "embedrag_text_qlora.yaml").read_text(encoding="utf-8")
    )
    raw["name"] = "gpu-check-qlora"
    raw["output_dir"] = str(part.work / "runs")
    raw["model"].update(path=str(part.models / "decoder"), max_length=max_length)
    raw["data"].update(
        train=str(data_path), limit=batch
    )  # the same batch every step: see the docstring
    raw["lora"]["load_in_4bit"] = quantize
    raw["training"].update(
        max_steps=steps, batch_size=batch, gradcache_chunk=chunk, logger="none", log_every=1
    )
    raw["eval"]["tasks"] = []
    recipe = resolve_recipe(raw)
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    what = "QLoRA (4-bit)" if quantize else f"LoRA (QLoRA skipped: {why_not})"
    part.log(
        f"{what}: {steps} steps, batch {batch}, gradcache chunk {chunk}, "
        f"max_length {max_length}, {n_rows} FAQ rows"
    )

    if part.cuda:
        torch.cuda.reset_peak_memory_stats()
    load_s, model = part.timed(lambda: build_model(recipe, device=part.device))
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    part.log(
        f"model built in {load_s:.1f} s: {four_bit} 4-bit linear layers, "
        f"{trainable:,} trainable parameters"
    )
    examples = read_examples(recipe)
    check_inputs(model, examples, recipe)
    fit_s, summary = part.timed(
        lambda: fit(recipe, model, examples, recipe.run_dir, progress=False)
    )
    rows = summary.log_rows
    losses = [r["loss"] for r in rows]
    # fit logs samples/s per step (the batch over the step's wall time)
    step_s = [batch / r["samples_per_s"] if r["samples_per_s"] else float("nan") for r in rows]
    for r, s in zip(rows, step_s):
        part.log(f"step {r['step']}: loss {r['loss']:.4f}, {s:.2f} s")
    peak = part.peak_memory_gib()
    window = max(1, min(5, len(losses) // 2))
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    went_down = last < first
    mode = (
        "QLoRA (4-bit NF4 base, bf16 compute)"
        if quantize
        else ("LoRA, bf16 autocast" if part.cuda else "LoRA, fp32 on the CPU")
    )
    md = ""
    if not quantize:
        md += f"**QLoRA skipped**: {why_not}. The same steps ran as plain {mode} instead:\n\n"
    md += table(
        ["what", "value"],
        [
            ["mode", mode],
            [
                "model",
                (
                    f"decoder from prepare.py, {four_bit} 4-bit linear layers, "
                    f"{trainable:,} trainable (LoRA r={recipe.lora.r})"
                ),
            ],
            [
                "steps x batch",
                (
                    f"{len(rows)} x the same {batch} FAQ examples (1 positive + "
                    f"{recipe.data.negatives_per_query} negatives each), gradcache chunk {chunk}, "
                    f"max_length {max_length}, lr {recipe.training.lr:g}"
                ),
            ],
            ["model build (load + quantise + LoRA)", f"{load_s:.1f} s"],
            ["fit, all steps (incl. final checkpoint)", f"{fit_s:.1f} s"],
            [
                "step time: first / median of the rest",
                f"{step_s[0]:.2f} s / {median(step_s[1:] or step_s):.2f} s",
            ],
            ["peak GPU memory allocated", f"{peak:.2f} GiB" if peak is not None else "n/a (CPU)"],
            ["loss: first / last step", f"{losses[0]:.4f} / {losses[-1]:.4f}"],
            [
                f"loss: mean of first {window} / last {window}",
                f"{first:.4f} / {last:.4f} ({'down' if went_down else 'NOT down'})",
            ],
        ],
        left=2,
    )
    md += "\nLoss per step: " + ", ".join(f"{v:.3f}" for v in losses) + "\n"
    data = {
        "quantized": quantize,
        "skipped_reason": why_not,
        "mode": mode,
        "steps": len(rows),
        "batch": batch,
        "chunk": chunk,
        "max_length": max_length,
        "load_seconds": load_s,
        "fit_seconds": fit_s,
        "step_seconds": step_s,
        "losses": losses,
        "peak_gib": peak,
        "four_bit_layers": four_bit,
        "trainable_parameters": trainable,
        "loss_went_down": went_down,
    }
    finite = all(math.isfinite(v) for v in losses)
    status = ("ok" if finite and went_down else "failed") if quantize else "skipped"
    return status, md, data


if __name__ == "__main__":
    Part("qlora").run(body)
