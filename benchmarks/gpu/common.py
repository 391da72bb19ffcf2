"""Shared by the GPU check's parts: arguments, sizes, timing, texts and the result fragment.

Each part is its own process (started by ``run.sh`` under ``timeout``), so a
crash or a hang in one part cannot take the others down. A part writes one
fragment, ``<work>/parts/<name>.json``: its status (ok / skipped / failed),
its Markdown section and its raw numbers; ``report.py`` assembles them into
``gpu.md`` and ``gpu.json``. A part that dies before writing is reported from
its exit code and log by ``report.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the checkout's vembed_bench, installed or not

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

FAQ = ROOT / "vembed_bench" / "datasets" / "python_faq"
ASSETS = Path(__file__).resolve().parent / "assets"
_START = time.time()


# --------------------------------------------------------------------------- sizes
REAL = {
    "minilm_texts": 20_000,
    "minilm_batch": 128,
    "minilm_max_length": 256,
    "decoder_texts": 5_000,
    "decoder_batch": 64,
    "decoder_max_length": 256,
    "repeats": 3,
    "search_corpus": 1_000_000,
    "search_dim": 1024,
    "search_queries": 10_000,
    "search_check_queries": 256,
    "search_ks": [10, 100],
    "train_steps": 20,
    "train_batch": 32,
    "train_chunk": 16,
    "train_max_length": 256,
    "bidir_batch": 32,
    "bidir_length": 256,
    "bidir_repeats": 10,
    "auto_texts": 2048,
}
SMOKE = {
    "minilm_texts": 128,
    "minilm_batch": 32,
    "minilm_max_length": 64,
    "decoder_texts": 128,
    "decoder_batch": 16,
    "decoder_max_length": 64,
    "repeats": 1,
    "search_corpus": 20_000,
    "search_dim": 64,
    "search_queries": 300,
    "search_check_queries": 50,
    "search_ks": [10, 100],
    "train_steps": 4,
    "train_batch": 8,
    "train_chunk": 4,
    "train_max_length": 48,
    "bidir_batch": 4,
    "bidir_length": 32,
    "bidir_repeats": 3,
    "auto_texts": 64,
}
DECODER_SHAPE = {  # Qwen2.5-0.5B's shape; the vocabulary is the shipped tokenizer's
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
}
TINY_BERT_SHAPE = {  # the smoke run's stand-in for MiniLM (same tokenizer and modules)
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
}
TINY_DECODER_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
}


class Part:
    """One part's run: arguments, sizes, device, logging, and the fragment it writes."""

    def __init__(self, name: str) -> None:
        from report import PARTS  # one list of part names and titles, shared with the report

        title = PARTS[name]
        parser = argparse.ArgumentParser(description=title)
        parser.add_argument(
            "--work", type=Path, required=True, help="scratch folder shared by the parts"
        )
        parser.add_argument(
            "--smoke", action="store_true", help="tiny sizes (CPU check of the script)"
        )
        args = parser.parse_args()
        self.name, self.title = name, title
        self.work: Path = args.work
        self.smoke: bool = args.smoke
        self.sizes = SMOKE if self.smoke else REAL
        self.models = self.work / "models"
        import torch

        self.torch = torch
        self.cuda = torch.cuda.is_available()
        self.device = "cuda" if self.cuda else "cpu"
        # bf16 is the measured dtype on the GPU; CPU bf16 is slow, so the smoke run uses fp32.
        self.dtype_name = "bfloat16" if self.cuda else "float32"
        self.dtype = getattr(torch, self.dtype_name)
        if self.smoke and not self.cuda:
            torch.set_num_threads(1)  # tiny models: threads only add contention on a shared CPU
        self.began = time.perf_counter()
        self.log(f"start on {self.device} ({'smoke' if self.smoke else 'real'} sizes)")

    def log(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp} +{time.time() - _START:5.1f}s] {self.name}: {message}", flush=True)

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """Wall seconds of ``fn()`` with the device synchronised before and after."""
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return time.perf_counter() - t0, out

    def write(
        self,
        status: str,
        markdown: str,
        data: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        fragment = {
            "part": self.name,
            "title": self.title,
            "status": status,
            "seconds": round(time.perf_counter() - self.began, 1),
            "device": self.device,
            "smoke": self.smoke,
            "markdown": markdown,
            "data": data or {},
            "error": error,
        }
        folder = self.work / "parts"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{self.name}.json.tmp"
        tmp.write_text(json.dumps(fragment, indent=1, default=_plain) + "\n", encoding="utf-8")
        tmp.replace(folder / f"{self.name}.json")
        self.log(f"{status} in {fragment['seconds']} s")

    def run(self, body: Callable[[Part], tuple[str, str, dict[str, Any]]]) -> None:
        """Run ``body`` (returns status, markdown, data); an exception becomes a failed fragment."""
        try:
            status, markdown, data = body(self)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the other parts go on
            tb = traceback.format_exc()
            print(tb, file=sys.stderr, flush=True)
            text = str(exc).strip()
            first = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
            self.write(
                "failed", f"**failed**: `{first}`\n\n```\n{_tail(tb, 15)}\n```\n", error=first
            )
            sys.exit(1)
        self.write(status, markdown, data)

    def peak_memory_gib(self) -> float | None:
        return self.torch.cuda.max_memory_allocated() / 2**30 if self.cuda else None


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


# --------------------------------------------------------------------------- texts
def faq_texts() -> list[str]:
    """The shipped CPython FAQ: its answers, their sentences, and its questions (real English)."""
    texts: list[str] = []
    for line in (FAQ / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            doc = f"{row.get('title', '')} {row.get('text', '')}".strip()
            texts.append(doc)
            texts.extend(s for s in re.split(r"(?<=[.!?])\s+", doc) if len(s) > 3)
    for line in (FAQ / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(json.loads(line)["text"])
    return list(dict.fromkeys(texts))


def bench_texts(n: int) -> tuple[list[str], str]:
    """``n`` texts: the FAQ texts in a fixed shuffled order, repeated as needed."""
    import random

    base = faq_texts()
    random.Random(0).shuffle(base)
    texts = [base[i % len(base)] for i in range(n)]
    source = (
        f"{n} texts cycled from {len(base)} distinct CPython FAQ texts "
        "(answers, their sentences, questions)"
    )
    return texts, source


# --------------------------------------------------------------------------- measuring
def alternate(
    part: Part, contenders: dict[str, Callable[[], Any]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One untimed warm-up each, then ``repeats`` rounds in rotating order.

    Returns the seconds of each timed run and the last output, per contender.
    """
    names = list(contenders)
    outputs: dict[str, Any] = {}
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        seconds, outputs[name] = part.timed(contenders[name])
        part.log(f"warm-up {name}: {seconds:.2f} s")
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            seconds, outputs[name] = part.timed(contenders[name])
            times[name].append(seconds)
            part.log(f"round {r + 1} {name}: {seconds:.2f} s")
    return times, outputs


def median(values: list[float]) -> float:
    return statistics.median(values)


def row_cosines(a: Any, b: Any) -> tuple[float, float]:
    """(min, mean) over rows of the cosine between two row-aligned embedding matrices."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min()), float(cos.mean())


def table(header: list[str], rows: list[list[Any]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are text (left-aligned), the rest numbers."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < left else "--:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def encoder_flops(model: Any, lengths: list[int]) -> float:
    """Useful forward FLOPs over texts of ``lengths`` real tokens.

    ``2 * P * n`` for the linear layers (``P`` weights) plus ``4 * layers * d * n**2`` for
    attention's QK^T and AV; padding is not counted, so padded work shows as a lower rate.
    """
    import torch

    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    layers, d = cfg.num_hidden_layers, cfg.hidden_size
    return float(sum(2 * linear * n + 4 * layers * d * n * n for n in lengths))
