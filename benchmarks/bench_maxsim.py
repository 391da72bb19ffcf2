"""MaxSim search cost: exact over the whole corpus (in blocks) vs FAISS candidates + exact rerank.

ColBERT-shaped synthetic data: ``--docs`` documents of 40-180 unit-norm token vectors
and ``--queries`` queries of 32 tokens (dim 128). To make the ranking non-trivial,
each query is built from noisy copies of tokens of one "gold" document. Both modes go
through :func:`vembed_bench.search.maxsim.maxsim_search`; the table gives the time and
how many of the exact top-10 the rerank mode also returns (overlap@10), per candidate
depth (nearest document tokens per query token).

    .venv/bin/python benchmarks/bench_maxsim.py [--docs 5000] [--queries 1000] [--depths 16,64,256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _unit(x):
    import numpy as np

    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def main() -> None:
    import numpy as np

    from vembed_bench.search.maxsim import maxsim_search

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--depths", default="16,64,256")
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    docs = [_unit(rng.normal(size=(int(rng.integers(40, 181)), args.dim))) for _ in range(args.docs)]
    gold = rng.integers(0, args.docs, size=args.queries)
    queries = []
    for g in gold:
        picks = docs[g][rng.integers(0, docs[g].shape[0], size=32)]
        queries.append(_unit(picks + 0.8 * rng.normal(size=picks.shape) / np.sqrt(args.dim) * 4))
    n_tokens = sum(d.shape[0] for d in docs)

    from vembed_bench.search.maxsim import token_index

    start = time.perf_counter()
    _, described = token_index(np.concatenate(docs))
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = maxsim_search(queries, docs, args.k, mode="exact")
    exact_s = time.perf_counter() - start
    rows = [("exact", "-", exact_s, 1.0, float(np.mean(exact.indices[:, 0] == gold)))]
    for depth in (int(d) for d in args.depths.split(",")):
        start = time.perf_counter()
        found = maxsim_search(queries, docs, args.k, mode="faiss", candidate_depth=depth)
        seconds = time.perf_counter() - start
        overlap = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found.indices, exact.indices)])
        rows.append(("faiss + rerank", str(depth), seconds, float(overlap), float(np.mean(found.indices[:, 0] == gold))))
    print(f"# MaxSim search: {args.queries} queries x 32 tokens, {args.docs} documents "
          f"({n_tokens} tokens), dim {args.dim}, k={args.k}\n")
    print(f"Token index: {described}, built in {build_s:.2f} s (included in every faiss row; "
          "it is built once per corpus and search).\n")
    print("| mode | candidate depth | seconds | vs exact | overlap@10 with exact | gold doc at rank 1 |")
    print("|---|--:|--:|--:|--:|--:|")
    for mode, depth, seconds, overlap, top1 in rows:
        print(f"| {mode} | {depth} | {seconds:.2f} | {seconds / exact_s:.2f}x | {overlap:.3f} | {top1:.2f} |")


if __name__ == "__main__":
    main()
