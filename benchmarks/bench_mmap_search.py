"""Peak memory of exact search over a cached corpus larger than the block budget: memory-mapped and
searched in blocks, against the same corpus read whole into memory.

The corpus is a real embedding-cache entry (``EmbeddingCache.get_or_compute``, so its
checksum record and meta are the ones an evaluation reads), written once by a setup
subprocess. Each measurement then runs in a fresh subprocess that loads the entry the way
the evaluation does -- ``load(key, mmap=True)`` (verified by a streamed hash, then
``np.memmap``) or ``load(key, mmap=False)`` (read and hashed in memory) -- and searches
it. Reported: the process's peak resident set (``ru_maxrss``, which counts the mapped
file's pages while they are resident) above its baseline after imports and a warm-up
search, for the load (verification) and for load + search, and the search's wall time.
The top-k of both modes are compared id for id.

    .venv/bin/python benchmarks/bench_mmap_search.py                       # 1,000,000 x 512 (2 GB)
    .venv/bin/python benchmarks/bench_mmap_search.py --n 200000 --backends numpy --out /tmp/x.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GB = 1e9


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _items(n: int):
    from vembed_bench.data.types import Item

    return [Item(id=str(i), text="") for i in range(n)]


def _key(n: int, dim: int) -> str:
    from vembed_bench.cache import cache_key

    return cache_key(f"bench-mmap-{n}x{dim}", "document", {}, _items(n))


def setup(root: Path, n: int, dim: int) -> dict:
    """Write the cache entry: seeded random unit rows, produced shard by shard."""
    import numpy as np

    from vembed_bench.cache import EmbeddingCache

    store = EmbeddingCache(root, shard_size=65536)

    def rows(chunk):
        start = int(chunk[0].id)
        x = np.random.default_rng([0, start]).standard_normal((len(chunk), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    start = time.perf_counter()
    store.get_or_compute(_key(n, dim), _items(n), rows)
    return {"setup_seconds": round(time.perf_counter() - start, 1)}


def child(root: Path, key: str, mode: str, n: int, dim: int, nq: int, k: int, backend: str, block_mb: float,
          out_ids: Path) -> dict:
    import numpy as np

    sys.path.insert(0, str(REPO))
    from vembed_bench.cache import EmbeddingCache
    from vembed_bench.search import search

    queries = np.random.default_rng(1).standard_normal((nq, dim), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    warm = np.random.default_rng(2).standard_normal((4096, dim), dtype=np.float32)
    search(queries[:8], warm, k, backend=backend)  # imports and BLAS warm-up before the baseline
    store = EmbeddingCache(root)
    base = _peak_mb()
    start = time.perf_counter()
    corpus = store.load(key, mmap=(mode == "mmap"))
    load_seconds = time.perf_counter() - start
    after_load = _peak_mb()
    start = time.perf_counter()
    found = search(queries, corpus, k, backend=backend, block_mb=block_mb)
    search_seconds = time.perf_counter() - start
    np.save(out_ids, found.indices)
    return {
        "mode": mode, "backend": backend, "n": n, "dim": dim, "nq": nq, "k": k,
        "corpus_gb": round(corpus.nbytes / GB, 2), "block_mb": block_mb if mode == "mmap" else None,
        "search_info": found.info,
        "baseline_mb": round(base), "load_peak_extra_mb": round(after_load - base),
        "peak_extra_mb": round(_peak_mb() - base), "peak_mb": round(_peak_mb()),
        "load_seconds": round(load_seconds, 1), "search_seconds": round(search_seconds, 1),
    }


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--nq", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block-mb", type=float, default=256)
    parser.add_argument("--backends", default="numpy,faiss")
    parser.add_argument("--root", default=None, help="cache folder to use (kept); default: a temporary one")
    parser.add_argument("--out", default=str(REPO / "benchmarks/results/mmap_search_cpu.md"))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="numpy", help=argparse.SUPPRESS)
    parser.add_argument("--ids", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--key", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.child == "setup":
        print(json.dumps(setup(Path(args.root), args.n, args.dim)))
        return
    if args.child:
        print(json.dumps(child(Path(args.root), args.key, args.child, args.n, args.dim, args.nq, args.k,
                               args.backend, args.block_mb, Path(args.ids))))
        return

    import numpy as np

    from vembed_bench.search.choice import cpu_model

    started = time.perf_counter()
    temporary = args.root is None
    root = Path(tempfile.mkdtemp(prefix="bench-mmap-")) if temporary else Path(args.root)
    common = ["--root", str(root), "--n", str(args.n), "--dim", str(args.dim)]
    try:
        made = run_child(["--child", "setup", *common])
        key = _key(args.n, args.dim)  # here: hashing n items would inflate the children's baseline
        rows = []
        for backend in args.backends.split(","):
            ids = {}
            for mode in ("mmap", "dense"):
                ids_path = root / f"ids-{backend}-{mode}.npy"
                rows.append(run_child(["--child", mode, *common, "--key", key, "--nq", str(args.nq), "--k", str(args.k),
                                       "--backend", backend, "--block-mb", str(args.block_mb),
                                       "--ids", str(ids_path)]))
                ids[mode] = np.load(ids_path)
            rows[-1]["ids_equal_to_mmap"] = rows[-2]["ids_equal_to_mmap"] = float((ids["mmap"] == ids["dense"]).mean())
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    for row in rows:
        print(json.dumps(row))
    command = "`.venv/bin/python benchmarks/bench_mmap_search.py" + "".join(
        f" --{name.replace('_', '-')} {getattr(args, name)}" for name in ("n", "dim", "nq", "k", "block_mb", "backends")
        if getattr(args, name) != parser.get_default(name)) + "`"
    lines = [
        "# Exact search over a memory-mapped cache entry vs. the matrix in memory (CPU)", "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"- command: {command}",
        f"- corpus: {args.n:,} x {args.dim} float32 ({args.n * args.dim * 4 / GB:.2f} GB) random unit rows, a real "
        f"embedding-cache entry (setup {made['setup_seconds']} s); {args.nq:,} queries, k={args.k}; "
        f"block budget {args.block_mb:g} MB",
        f"- wall time: {time.perf_counter() - started:.0f} s", "",
        "Peak extra RSS = the process's `ru_maxrss` after the step minus its value after imports and a warm-up "
        "search (a fresh process per row; the baseline is in the last column). It counts the mapped file's "
        "pages while they are resident. *load* = `EmbeddingCache.load(key, mmap=...)`, including checksum "
        "verification; *load + search* = the whole measurement.", "",
        "| backend | corpus | load: peak extra MB | load + search: peak extra MB | load s | search s | blocks "
        "| ids equal | peak RSS MB (baseline) |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in rows:
        what = "memory-mapped, blocked" if row["mode"] == "mmap" else "read into memory"
        lines.append(f"| {row['backend']} | {what} | {row['load_peak_extra_mb']:,} | {row['peak_extra_mb']:,} | "
                     f"{row['load_seconds']} | {row['search_seconds']} | {row['search_info'].get('corpus_blocks', 1)} | "
                     f"{row['ids_equal_to_mmap']:.4f} | {row['peak_mb']:,} ({row['baseline_mb']:,}) |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
