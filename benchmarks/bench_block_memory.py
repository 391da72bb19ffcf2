"""Peak memory of SOP-sized exact image-to-image search, against the dense matrix it avoids.

Stanford Online Products' test split has 60,502 images; with 768-d embeddings
(DINOv2-B, ViT-B) an all-against-all score matrix is 60,502^2 float32 values,
14.6 GB. ``vembed_bench.search`` scores the corpus in blocks and keeps only the
running top-k, so its peak stays near the embeddings themselves. Each
measurement runs in a fresh subprocess and reports its peak resident set
(``ru_maxrss``), minus that of the same process after creating the inputs.

    .venv/bin/python benchmarks/bench_block_memory.py --n 60502 --dim 768 --k 100
    .venv/bin/python benchmarks/bench_block_memory.py --n 10000 --dense   # the dense matrix, measured
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def child(mode: str, n: int, dim: int, k: int, backend: str) -> dict:
    import numpy as np

    sys.path.insert(0, str(REPO))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if mode == "block":
        from vembed_bench.search import search

        search(x[:8], x, k, backend=backend)  # import and warm up before the baseline
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if mode == "dense":
        scores = x @ x.T
        np.fill_diagonal(scores, -np.inf)
        top = np.argpartition(-scores, k, axis=1)[:, :k]
    else:
        top = search(x, x, k, backend=backend, exclude=np.arange(n)).indices
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "n": n, "dim": dim, "k": k, "backend": backend if mode == "block" else "numpy",
            "seconds": round(seconds, 2), "peak_extra_mb": round((peak - base) / 1024, 1),
            "inputs_mb": round(n * dim * 4 / 2**20, 1), "dense_matrix_mb": round(n * n * 4 / 2**20, 1),
            "top_shape": list(top.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60502)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--dense", action="store_true", help="Measure the dense matrix instead (small n only).")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.n, args.dim, args.k, args.backend)))
        return
    mode = "dense" if args.dense else "block"
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(args.n), "--dim", str(args.dim),
                          "--k", str(args.k), "--backend", args.backend], capture_output=True, text=True, check=True)
    print(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
