"""Part 2: exact search with ``TorchBackend`` on the GPU against the matmul rate of the same shapes.

Random unit vectors (drawn on the device, so no CPU time is spent making 4 GB of them).
The backend is called as the pipeline calls it: numpy float32 in, numpy out, so each call
also uploads the corpus; that upload is timed alone too. The matmul ceiling is a plain
``torch.mm`` over exactly the backend's blocks (query block x corpus block, from its own
constants), in fp32 (TF32 off, which is what the backend runs), TF32, bf16 and fp16.
Correctness: the backend's top-k for a query subset against ``torch.topk`` of the full
fp32 product and of a float64 product.
"""

from __future__ import annotations

from common import Part, median, table


def unit_rows(torch, n: int, d: int, device: str, seed: int):
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(n, d, device=device, generator=generator)
    return torch.nn.functional.normalize(x, dim=1)


def mm_seconds(part: Part, q, x, qb: int, cb: int, dtype, tf32: bool) -> float:
    """Seconds for the backend's block products alone (no top-k), in ``dtype``; best of 3."""
    torch = part.torch
    q, x = q.to(dtype), x.to(dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:

        def sweep() -> None:
            for q0 in range(0, q.shape[0], qb):
                for c0 in range(0, x.shape[0], cb):
                    torch.mm(q[q0 : q0 + qb], x[c0 : c0 + cb].T)

        sweep()  # warm-up: handles and kernel choice
        return min(part.timed(sweep)[0] for _ in range(3))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def check_topk(part: Part, q, x, result, k: int, rows: int) -> dict:
    """The first ``rows`` queries' top-k against ``torch.topk`` of a float64 product.

    Checked: the backend's answer, and for comparison what ``torch.topk`` of a plain fp32,
    TF32 and bf16 product returns. ``shortfall`` is the largest float64 score gap between the
    reference's k-th hit and the worst hit returned: zero when the sets agree, about fp32
    rounding (1e-7) for an fp32 near-tie, larger when a lower precision picked the wrong rows.
    """
    import numpy as np

    torch = part.torch
    cuda = torch.backends.cuda.matmul
    out: dict = {}
    with torch.inference_mode():
        exact = _chunked(torch, q[:rows], x, torch.float64)
        best = torch.topk(exact, k, dim=1)
        reference = best.indices.cpu().numpy()
        answers = {"TorchBackend (ours)": result.indices[:rows]}
        for name, dtype, tf32 in (
            ("torch.topk, fp32 product", torch.float32, False),
            ("torch.topk, TF32 product", torch.float32, True),
            ("torch.topk, bf16 product", torch.bfloat16, False),
        ):
            if tf32 and not part.cuda:
                continue
            previous, cuda.allow_tf32 = cuda.allow_tf32, tf32
            try:
                answers[name] = torch.topk(_chunked(torch, q[:rows], x, dtype), k, dim=1).indices
            finally:
                cuda.allow_tf32 = previous
            answers[name] = answers[name].cpu().numpy()
        for name, got in answers.items():
            worst = exact.gather(1, torch.from_numpy(got).to(q.device)).min(dim=1).values
            out[name] = {
                "rows_identical": float(np.mean(np.all(got == reference, axis=1))),
                "rows_same_set": float(np.mean([set(a) == set(b) for a, b in zip(got, reference)])),
                "shortfall": float((best.values[:, -1] - worst).clamp_min(0).max()),
            }
        ours = exact.gather(1, torch.from_numpy(result.indices[:rows]).to(q.device))
        scores = torch.from_numpy(result.scores[:rows]).to(q.device).double()
        out["max_abs_score_error"] = float((ours - scores).abs().max())
    return out


def _chunked(torch, q, x, dtype, chunk: int = 131072):
    return torch.cat(
        [q.to(dtype) @ x[c : c + chunk].to(dtype).T for c in range(0, x.shape[0], chunk)], dim=1
    )


def body(part: Part):

    from vembed_bench.search import torch_backend
    from vembed_bench.search.torch_backend import TorchBackend

    torch = part.torch
    n, d, nq = (part.sizes[k] for k in ("search_corpus", "search_dim", "search_queries"))
    ks, check_rows = part.sizes["search_ks"], part.sizes["search_check_queries"]
    x_dev = unit_rows(torch, n, d, part.device, 1)
    q_dev = unit_rows(torch, nq, d, part.device, 2)
    corpus, queries = x_dev.cpu().numpy(), q_dev.cpu().numpy()
    part.log(f"corpus {n} x {d} ({corpus.nbytes / 2**30:.2f} GiB), {nq} queries")
    backend = TorchBackend(device=part.device)
    # The backend's own blocking (search(): default memory budget and query block).
    budget_mb = torch_backend.CUDA_MEMORY_MB if part.cuda else torch_backend.DEFAULT_MEMORY_MB
    qb = min(nq, 4096 if part.cuda else 1024)
    cb = max(1, min(n, budget_mb * 2**20 // (4 * qb)))
    flop = 2.0 * nq * n * d

    backend.search(queries[: min(nq, 512)], corpus, ks[0])  # warm-up (handles, kernels, allocator)
    upload = (
        min(part.timed(lambda: torch.from_numpy(corpus).to(part.device))[0] for _ in range(3))
        if part.cuda
        else 0.0
    )
    searches, results = {}, {}
    for k in ks:
        seconds = []
        for _ in range(part.sizes["repeats"]):
            t, results[k] = part.timed(lambda k=k: backend.search(queries, corpus, k))
            seconds.append(t)
            part.log(f"k={k}: {t:.3f} s")
        searches[k] = seconds
    ceilings = {}
    if part.cuda:
        for name, dtype, tf32 in (
            ("fp32 (TF32 off)", torch.float32, False),
            ("TF32", torch.float32, True),
            ("bf16", torch.bfloat16, False),
            ("fp16", torch.float16, False),
        ):
            ceilings[name] = mm_seconds(part, q_dev, x_dev, qb, cb, dtype, tf32)
            part.log(
                f"mm {name}: {ceilings[name]:.3f} s = {flop / ceilings[name] / 1e12:.1f} TFLOP/s"
            )
    else:
        ceilings["fp32"] = mm_seconds(part, q_dev, x_dev, qb, cb, torch.float32, False)
    fp32 = next(iter(ceilings.values()))
    checks = {k: check_topk(part, q_dev, x_dev, results[k], k, check_rows) for k in ks}
    ours = "TorchBackend (ours)"
    exact = all(
        c[ours]["shortfall"] <= 1e-5 and c["max_abs_score_error"] <= 1e-5 for c in checks.values()
    )

    rows = []
    for k in ks:
        mid = median(searches[k])
        rows.append(
            [
                f"TorchBackend.search k={k} (numpy in/out, incl. corpus upload)",
                f"{mid:.3f}",
                f"{flop / mid / 1e12:.1f}",
                f"{fp32 / mid:.0%}",
                f"{nq / mid:,.0f}",
            ]
        )
        if part.cuda:
            rows.append(
                [
                    f"  same, minus the corpus upload ({upload:.3f} s)",
                    f"{mid - upload:.3f}",
                    f"{flop / (mid - upload) / 1e12:.1f}",
                    f"{fp32 / (mid - upload):.0%}",
                    f"{nq / (mid - upload):,.0f}",
                ]
            )
    for name, seconds in ceilings.items():
        rows.append(
            [
                f"torch.mm {name}, same blocks, no top-k",
                f"{seconds:.3f}",
                f"{flop / seconds / 1e12:.1f}",
                f"{fp32 / seconds:.0%}",
                f"{nq / seconds:,.0f}",
            ]
        )
    check_rows_md = [
        [
            f"k={k}",
            name,
            f"{c[name]['rows_identical']:.1%}",
            f"{c[name]['rows_same_set']:.1%}",
            f"{c[name]['shortfall']:.1e}",
        ]
        for k, c in checks.items()
        for name in c
        if name != "max_abs_score_error"
    ]
    errors = ", ".join(f"{c['max_abs_score_error']:.1e} (k={k})" for k, c in checks.items())
    md = (
        f"Corpus {n:,} x {d} float32 ({corpus.nbytes / 2**30:.1f} GiB, random unit rows), "
        f"{nq:,} queries; backend blocks: {qb} queries x {cb:,} corpus rows; "
        f"{flop / 1e12:.2f} TFLOP per search. Median of {part.sizes['repeats']} calls after a "
        "warm-up.\n\n"
        + table(["what", "seconds", "TFLOP/s", "rate vs fp32 mm", "queries/s"], rows)
        + f"\nTop-k of the first {check_rows} queries against `torch.topk` of a float64 product "
        "(shortfall: the largest float64 gap between the reference's k-th score and the worst "
        "score returned; 0 when the sets agree):\n\n"
        + table(["k", "answer", "identical rows", "same set", "shortfall"], check_rows_md, left=2)
        + f"\nLargest |backend score - float64 score|: {errors}. The backend switches TF32 off "
        "for the call, so it computes true fp32 products: its scores are float32-exact, and only "
        "near-ties closer than fp32 rounding could order differently from float64. TF32 and bf16 "
        "products are faster (timing rows above) but round the inputs to 11 and 8 significant "
        "bits; the bf16/TF32 rows of the check show what that does to the top-k.\n\n"
        "Backend top-k exact up to fp32 rounding (shortfall and score error <= 1e-5): "
        f"**{'yes' if exact else 'NO'}**.\n"
    )
    data = {
        "corpus": n,
        "dim": d,
        "queries": nq,
        "query_block": qb,
        "corpus_block": cb,
        "flop": flop,
        "search_seconds": searches,
        "upload_seconds": upload,
        "mm_seconds": ceilings,
        "checks": checks,
        "peak_gib": part.peak_memory_gib(),
    }
    return ("ok" if exact else "failed"), md, data


if __name__ == "__main__":
    Part("search").run(body)
