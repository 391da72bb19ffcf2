"""LLM embedder throughput: length-sorted batches (what LLMEncoder does) vs batches in input order.

Real weights (SmolLM2-135M-Instruct, converted by ``vembed-bench prepare smollm2``) on the
shipped CPython FAQ answers (179 texts of very different lengths). Both paths run the
same tokenisation, padding, forward and pooling of the encoder; only the grouping of
texts into batches differs, so the padded tokens wasted on short texts next to long
ones are what is measured. Both give the same embeddings (checked). Throughput is real
(non-padding) tokens per second; each path is timed ``--repeats`` times, alternating.

    .venv/bin/python benchmarks/bench_llm_encode.py --model DIR [--batch-size 16] [--max-length 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    import numpy as np
    import torch

    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.encoders.hf_encoder import _batches
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.encoders.text_inputs import item_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    texts = [item_text(d) for d in load_task(resolve_card("python_faq"), "test").corpus]
    encoder = load_encoder(args.model, model_type="llm", pooling="mean", max_length=args.max_length,
                           device="cpu", show_progress=False, max_batch_tokens=0)
    enc = encoder.tokenize(texts)
    lengths = [len(ids) for ids in enc["input_ids"]]
    real_tokens = sum(lengths)

    def run(order: list[int]) -> np.ndarray:
        out = np.empty((len(texts), encoder.dim or 0), dtype=np.float32)
        with torch.inference_mode():
            for sel in _batches(order, lengths, args.batch_size, None):
                out[sel] = encoder._forward(encoder._collate(enc, sel, lengths))
        return out

    sorted_order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    input_order = list(range(len(texts)))
    padded = {name: sum(len(sel) * max(lengths[j] for j in sel)
                        for sel in _batches(order, lengths, args.batch_size, None))
              for name, order in (("sorted", sorted_order), ("input order", input_order))}
    times: dict[str, list[float]] = {"sorted": [], "input order": []}
    results = {}
    for _ in range(args.repeats):
        for name, order in (("sorted", sorted_order), ("input order", input_order)):
            start = time.perf_counter()
            results[name] = run(order)
            times[name].append(time.perf_counter() - start)
    np.testing.assert_allclose(results["sorted"], results["input order"], atol=2e-4)
    print(f"# LLM encode throughput: {Path(args.model).name}, {len(texts)} texts, {real_tokens} real tokens, "
          f"batch {args.batch_size}, max_length {args.max_length}, {torch.get_num_threads()} threads\n")
    print("| batching | padded tokens | best s | real tokens/s |")
    print("|---|--:|--:|--:|")
    for name in times:
        best = min(times[name])
        print(f"| {name} | {padded[name]} | {best:.2f} | {real_tokens / best:.0f} |")
    ratio = min(times["input order"]) / min(times["sorted"])
    print(f"\nlength-sorted is {ratio:.2f}x faster (best of {args.repeats}, alternated; same embeddings).")


if __name__ == "__main__":
    main()
