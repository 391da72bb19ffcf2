"""GradCache memory and speed on CPU: all-MiniLM-L6-v2, 128 tokens, CPython FAQ pairs.

Three training steps are measured, each in its own process (so peak RSS is that
configuration's own):

* ``plain32``: an ordinary InfoNCE step at batch 32 (the memory reference);
* ``gradcache256``: our GradCache step at effective batch 256, chunks of 32;
* ``cmnrl256``: sentence-transformers' ``CachedMultipleNegativesRankingLoss``
  (mini-batch 32) at batch 256 (the speed reference).

Every step includes the AdamW update. Targets (issue 5): GradCache peak memory
<= 1.1x plain batch 32, and time per sample <= 1.1x CMNRL.

    .venv/bin/python benchmarks/bench_gradcache.py [--steps 2] [--out benchmarks/results/gradcache_cpu.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MAX_LENGTH = 128
CHUNK = 32


def _pairs(n: int) -> tuple[list[str], list[str]]:
    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.encoders.text_inputs import item_text

    card = resolve_card("python_faq")
    queries, docs = [], []
    for split in ("train", "test"):
        data = load_task(card, split)
        corpus = {d.id: d for d in data.corpus}
        for query in data.queries:
            for doc_id in data.qrels[query.id]:
                queries.append(query.text)
                docs.append(item_text(corpus[doc_id]))
    # Cycle the 178 real pairs up to n (in-batch duplicates change the loss value, not the cost).
    return [queries[i % len(queries)] for i in range(n)], [docs[i % len(docs)] for i in range(n)]


def _alternate(rounds: int) -> dict:
    """GradCache@256 and CMNRL@256 steps alternated in one process (same load for both)."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import CachedMultipleNegativesRankingLoss

    from vembed_bench.demo import demo_model_path
    from vembed_bench.train.gradcache import gradcache_step
    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss
    from vembed_bench.train.model import embed_inputs

    torch.manual_seed(0)
    model = SentenceTransformer(str(demo_model_path()), device="cpu")
    model.max_seq_length = MAX_LENGTH
    model.train()
    queries, docs = _pairs(256)
    loss_module = InfoNCELoss(0.05)
    cmnrl = CachedMultipleNegativesRankingLoss(model, mini_batch_size=CHUNK)

    def ours() -> None:
        gradcache_step(lambda c: embed_inputs(model, c, "cpu"), queries + docs,
                       lambda r: loss_module(EmbeddingBatch(r[:256], r[256:])), CHUNK)

    def theirs() -> None:
        cmnrl([model.preprocess(queries), model.preprocess(docs)], None).backward()

    times: dict[str, list[float]] = {"gradcache256": [], "cmnrl256": []}
    for _ in range(rounds):
        for name, fn in (("gradcache256", ours), ("cmnrl256", theirs)):
            start = time.perf_counter()
            fn()
            model.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - start)
    return {"mode": "alternate", "rounds": rounds, "step_s": times,
            "ratio_min": min(times["gradcache256"]) / min(times["cmnrl256"]),
            "ratio_sum": sum(times["gradcache256"]) / sum(times["cmnrl256"])}


def _child(mode: str, steps: int) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from vembed_bench.demo import demo_model_path
    from vembed_bench.train.gradcache import gradcache_step, plain_step
    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss
    from vembed_bench.train.model import embed_inputs

    torch.manual_seed(0)
    model = SentenceTransformer(str(demo_model_path()), device="cpu")
    model.max_seq_length = MAX_LENGTH
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch = 32 if mode == "plain32" else 256
    queries, docs = _pairs(batch)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss_module = InfoNCELoss(0.05)  # scale 20, as CMNRL's default

    if mode == "cmnrl256":
        from sentence_transformers.losses import CachedMultipleNegativesRankingLoss

        cmnrl = CachedMultipleNegativesRankingLoss(model, mini_batch_size=CHUNK)

        def step() -> float:
            features = [model.preprocess(queries), model.preprocess(docs)]
            loss = cmnrl(features, None)
            loss.backward()
            return float(loss.detach())
    else:
        texts = queries + docs

        def embed(chunk):
            return embed_inputs(model, chunk, "cpu")

        def loss_fn(reps):
            return loss_module(EmbeddingBatch(reps[:batch], reps[batch:]))

        def step() -> float:
            if mode == "plain32":
                return plain_step(embed, texts, loss_fn, lambda loss: loss.backward())
            return gradcache_step(embed, texts, loss_fn, CHUNK)

    times, losses = [], []
    for _ in range(steps):
        start = time.perf_counter()
        losses.append(step())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": mode,
        "batch": batch,
        "steps": steps,
        "step_s": times,
        "loss": losses,
        "s_per_sample": min(times) / batch,
        "peak_rss_mb": peak / 1024,
        "loaded_rss_mb": base_rss / 1024,
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=2, help="measured steps per configuration (min is kept)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gradcache_cpu.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--alternate", type=int, default=0,
                        help="also time GradCache and CMNRL alternately in one process, N rounds")
    args = parser.parse_args()
    if args.child:
        result = _alternate(args.steps) if args.child == "alternate" else _child(args.child, args.steps)
        print(json.dumps(result))
        return
    rows = {}
    for mode, steps in (
        ("plain32", max(args.steps, 3)),
        ("gradcache256", args.steps),
        ("cmnrl256", args.steps),
    ):
        out = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--steps", str(steps)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
        rows[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(rows[mode]), flush=True)
    if args.alternate:
        out = subprocess.run([sys.executable, __file__, "--child", "alternate", "--steps", str(args.alternate)],
                             check=True, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        rows["alternate"] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(rows["alternate"]), flush=True)
    plain, cache, cmnrl = rows["plain32"], rows["gradcache256"], rows["cmnrl256"]
    mem_ratio = cache["peak_rss_mb"] / plain["peak_rss_mb"]
    speed_ratio = cache["s_per_sample"] / cmnrl["s_per_sample"]
    lines = [
        "# GradCache on CPU (all-MiniLM-L6-v2, 128 tokens, CPython FAQ pairs)",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_gradcache.py --steps {args.steps}`; "
        f"{plain['threads']} torch threads; each configuration in its own process; "
        "time per sample from the fastest measured step (forward, backward and AdamW update).",
        "",
        "| configuration | batch | peak RSS (MB) | RSS after load (MB) | ms / sample |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, row in (
        ("plain InfoNCE", plain),
        ("GradCache (chunk 32)", cache),
        ("ST CachedMNRL (mini-batch 32)", cmnrl),
    ):
        lines.append(
            f"| {name} | {row['batch']} | {row['peak_rss_mb']:.0f} | {row['loaded_rss_mb']:.0f} | "
            f"{1000 * row['s_per_sample']:.1f} |"
        )
    lines += [
        "",
        f"GradCache@256 peak memory / plain@32: **{mem_ratio:.3f}x** (target <= 1.1x).",
        f"GradCache@256 time per sample / CachedMNRL@256: **{speed_ratio:.3f}x** (target <= 1.1x).",
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
