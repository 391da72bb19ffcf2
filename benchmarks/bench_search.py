"""Exact search throughput as a fraction of this machine's float32 GEMM rate.

Exact top-k inner-product search costs 2*nq*N*d flops of matmul plus top-k
selection, so the best float32 GEMM rate of the same machine, threads and run is
its ceiling. This script measures that ceiling (numpy and torch matmul of large
square matrices and of the search's own block shape, best of all) and then each
backend's achieved GFLOP/s = 2*nq*N*d / time, reporting the fraction.

Machine speed drifts (shared, throttled cores), so the GEMM rate is re-measured
in every repetition, interleaved with the searches, and only same-run ratios
are meaningful. Results go to a markdown table (``--out``).

    .venv/bin/python benchmarks/bench_search.py                  # N=100k and 1M, d=384
    .venv/bin/python benchmarks/bench_search.py --n 100000 --k 10 --reps 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vembed_bench.search import resolve_backend, search  # noqa: E402


RAW_FAISS = "faiss.knn (raw, no tie fix)"
STEADY = 0.15
"""Probes before and after a search within this relative gap mark a steady machine."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="100000,1000000", help="corpus sizes, comma-separated")
    p.add_argument("--d", type=int, default=384, help="embedding dimension")
    p.add_argument("--nq", type=int, default=2000, help="number of queries")
    p.add_argument("--k", default="10,1000", help="top-k values, comma-separated")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions (best is kept)")
    p.add_argument("--backends", default="faiss,numpy,torch:cpu", help="search backends to time")
    p.add_argument(
        "--raw-max-n", type=int, default=200_000, help="also time raw faiss.knn up to this N"
    )
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for BLAS, OpenMP and torch")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/search_cpu.md"), help="markdown output")
    return p.parse_args()


def set_threads(n: int) -> dict[str, object]:
    """Pin BLAS, OpenMP (faiss) and torch to the same thread count; report what was set."""
    info: dict[str, object] = {}
    try:
        import faiss

        faiss.omp_set_num_threads(n)
        info["faiss"] = faiss.omp_get_max_threads()
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(n)
        info["torch"] = torch.get_num_threads()
    except ImportError:
        pass
    try:  # after the imports above, so their BLAS/OpenMP pools are seen too
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(n)
        info["threadpools"] = sorted(
            {f"{Path(p['filepath']).name}={p['num_threads']}" for p in threadpool_info()}
        )
    except ImportError:
        pass
    return info


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def timed(fn, min_time: float = 0.5) -> float:
    """Best seconds per call over repeated calls lasting at least ``min_time``."""
    best = float("inf")
    spent = 0.0
    while spent < min_time or best == float("inf"):
        t0 = time.perf_counter()
        fn()
        t = time.perf_counter() - t0
        best = min(best, t)
        spent += t
    return best


def gemm_rates(have_torch: bool) -> dict[str, float]:
    """GFLOP/s of large square float32 matmuls (numpy, and torch when timed)."""
    rng = np.random.default_rng(0)
    rates = {}
    for size in (2048, 4096):
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        flops = 2 * size**3
        rates[f"numpy {size}^3"] = flops / timed(lambda: a @ b) / 1e9
        if have_torch:
            import torch

            ta, tb = torch.from_numpy(a), torch.from_numpy(b)
            rates[f"torch {size}^3"] = flops / timed(lambda: ta @ tb) / 1e9
    return rates


class GemmProbe:
    """One search-shaped GEMM (1024 x d @ d x 50000), timed between searches.

    Its rate right before and after a search is that search's local ceiling,
    which cancels most of the machine's drift.
    """

    def __init__(self, d: int) -> None:
        rng = np.random.default_rng(1)
        self.q = rng.standard_normal((1024, d), dtype=np.float32)
        self.x = rng.standard_normal((50_000, d), dtype=np.float32)
        self.out = np.empty((1024, 50_000), dtype=np.float32)
        self.flops = 2 * 1024 * 50_000 * d
        self.name = f"numpy 1024x{d} @ {d}x50000"

    def __call__(self) -> float:
        return self.flops / timed(lambda: np.matmul(self.q, self.x.T, out=self.out), 0.2) / 1e9


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    out = np.empty((n, d), dtype=np.float32)
    for i in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - i), d), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[i : i + block.shape[0]] = block
    return out


def main() -> None:
    args = parse_args()
    ns = [int(v) for v in args.n.split(",")]
    ks = [int(v) for v in args.k.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    threads = set_threads(args.threads)
    have_torch = any(b.startswith("torch") for b in backends)
    have_faiss = "faiss" in backends
    started = time.time()

    gemm_best: dict[str, float] = {}
    probe = GemmProbe(args.d)
    rows = []  # (N, k, method, best seconds, flops, median local fraction)
    agree = {}
    for n in ns:
        rng = np.random.default_rng(n)
        corpus = unit_rows(rng, n, args.d)
        queries = unit_rows(rng, args.nq, args.d)
        flops = 2 * args.nq * n * args.d
        methods = list(backends)
        if have_faiss and n <= args.raw_max_n:
            methods.append(RAW_FAISS)
        best: dict[tuple[int, str], float] = {}
        local: dict[tuple[int, str], list[float]] = {}
        for rep in range(args.reps):
            for name, rate in gemm_rates(have_torch).items():
                gemm_best[name] = max(gemm_best.get(name, 0.0), rate)
            before = probe()
            gemm_best[probe.name] = max(gemm_best.get(probe.name, 0.0), before)
            for k in ks:
                firsts = {}
                for method in methods:
                    t0 = time.perf_counter()
                    if method == RAW_FAISS:
                        import faiss

                        faiss.knn(queries, corpus, k, metric=faiss.METRIC_INNER_PRODUCT)
                    else:
                        res = search(queries, corpus, k, backend=method)
                        firsts[method] = res.indices[:200]
                    t = time.perf_counter() - t0
                    after = probe()
                    gemm_best[probe.name] = max(gemm_best[probe.name], after)
                    rate = flops / t / 1e9
                    steady = abs(before - after) <= STEADY * (before + after) / 2
                    local.setdefault((k, method), []).append((rate / ((before + after) / 2), steady))
                    best[(k, method)] = min(best.get((k, method), float("inf")), t)
                    print(
                        f"N={n} k={k} rep={rep} {method}: {rate:.1f} GFLOP/s "
                        f"(GEMM probe {before:.0f} -> {after:.0f})",
                        flush=True,
                    )
                    before = after
                ref = firsts.get(backends[0])
                for method, idx in firsts.items():
                    agree[(n, k, method)] = float((idx == ref).mean()) if ref is not None else 1.0
        for (k, method), t in best.items():
            samples = local[(k, method)]
            steady = [f for f, ok in samples if ok] or [f for f, _ in samples]
            rows.append((n, k, method, t, flops, float(np.median(steady)), len(steady)))
        del corpus

    bound = max(gemm_best.values())
    lines = [
        "# Exact search throughput vs. float32 GEMM (CPU)",
        "",
        f"- date: {dt.datetime.now().isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        f"- threads: {args.threads} ({threads})",
        f"- command: `{' '.join(['.venv/bin/python benchmarks/bench_search.py', *sys.argv[1:]])}`",
        f"- d={args.d}, nq={args.nq}, random unit vectors; {args.reps} interleaved repetitions",
        "- libraries: " + "; ".join(resolve_backend(b).describe()["library"] for b in backends),
        f"- wall time: {time.time() - started:.0f} s",
        "",
        "GEMM rates (best of the run, GFLOP/s): "
        + ", ".join(f"{name}: {rate:.1f}" for name, rate in gemm_best.items()),
        "",
        f"**FLOP bound = {bound:.1f} GFLOP/s** (best of the above). "
        "Search GFLOP/s = 2*nq*N*d / best time; *fraction of bound* = that / bound. "
        "*Local fraction* = each search's rate / the mean of the GEMM probes timed just "
        f"before and after it, median over the repetitions whose two probes agree within "
        f"{STEADY:.0%} (their count in brackets; all repetitions if none do): it cancels most of the drift "
        "(the machine is shared and its speed drifts 2-3x), so it is the fairer column "
        "when the two disagree. Compare numbers only within this table.",
        "",
        "| N | k | method | best time (s) | GFLOP/s | fraction of bound | local fraction | ids equal to first backend (200 queries) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for n, k, method, t, flops, local_fraction, used in rows:
        rate = flops / t / 1e9
        same = agree.get((n, k, method))
        same_s = f"{same:.4f}" if same is not None else "-"
        lines.append(
            f"| {n:,} | {k} | {method} | {t:.2f} | {rate:.1f} | {rate / bound:.2f} "
            f"| {local_fraction:.2f} ({used}) | {same_s} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
