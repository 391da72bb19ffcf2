"""Regenerate the report fixtures in this folder (run from the repository root).

    .venv/bin/python tests/data/results/_make_fixtures.py

The result files are realistic but synthetic: for every task, queries get
relevance judgements and a latent difficulty shared by all models, each model
ranks the relevant documents according to its skill plus noise, and the
rankings are scored by :func:`vembed_bench.metrics.score` (the same code as a
real evaluation), so aggregate and per-query values are consistent. Every
random draw is seeded: re-running gives the same files.

Contents (model names are made up; the numbers describe no real model):
* three tasks: faq_en and docs_en (suite "text-en", graded qrels in docs_en),
  products_i2i (image-to-image, main metric hit@1);
* text-small, text-base, clip-b32, vit-small, plus text-base truncated to
  64/128/256 dimensions (Matryoshka convention: model_info["matryoshka_dim"]);
* results that must be kept apart: text-small on a 20-query --limit sample of
  faq_en (other data fingerprint), clip-b32 on docs_en with K values [1, 10];
* a training run folder runs/text-small-faq with comparison.json,
  train_log.jsonl and its zero-shot (identical to the top-level text-small
  result: a repeat) and fine-tuned results;
* a retrieval grid PNG beside clip-b32's products_i2i result.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from vembed_bench.metrics import METRIC_DEFINITIONS, score
from vembed_bench.results import Result

HERE = Path(__file__).resolve().parent

TASKS = {
    "faq_en": dict(
        n_queries=60,
        n_corpus=400,
        n_rel=(1, 2),
        grades=(1,),
        main="ndcg@10",
        suite="text-en",
        modality="text-to-text",
        description="FAQ question-to-answer retrieval (synthetic fixture).",
    ),
    "docs_en": dict(
        n_queries=40,
        n_corpus=250,
        n_rel=(1, 3),
        grades=(1, 2),
        main="ndcg@10",
        suite="text-en",
        modality="text-to-text",
        description="Documentation search with graded qrels (synthetic fixture).",
    ),
    "products_i2i": dict(
        n_queries=50,
        n_corpus=500,
        n_rel=(3, 6),
        grades=(1,),
        main="hit@1",
        suite=None,
        modality="image-to-image",
        description="Product photo retrieval by class (synthetic fixture).",
    ),
}
K_VALUES = [1, 5, 10]

MODELS = {
    "text-small": dict(
        dim=384, type="sentence-transformers", skill={"faq_en": 1.2, "docs_en": 0.9}
    ),
    "text-base": dict(dim=768, type="sentence-transformers", skill={"faq_en": 1.8, "docs_en": 1.3}),
    "clip-b32": dict(
        dim=512, type="clip", skill={"faq_en": 0.4, "docs_en": 0.3, "products_i2i": 1.6}
    ),
    "vit-small": dict(dim=384, type="timm", skill={"products_i2i": 1.5}),
    "text-small-ft": dict(dim=384, type="sentence-transformers", skill={"faq_en": 2.2}),
}
MATRYOSHKA = {64: -0.9, 128: -0.45, 256: -0.12}  # skill change of text-base per kept dimension


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def task_setup(name: str):
    """Qrels and per-query difficulty of a task (shared by all models)."""
    spec = TASKS[name]
    rng = np.random.default_rng(int(sha("task:" + name)[:8], 16))
    qids = [f"q{i:03d}" for i in range(spec["n_queries"])]
    qrels, difficulty = {}, {}
    for qid in qids:
        n_rel = int(rng.integers(spec["n_rel"][0], spec["n_rel"][1] + 1))
        docs = rng.choice(spec["n_corpus"], size=n_rel, replace=False)
        qrels[qid] = {f"d{int(d):04d}": int(rng.choice(spec["grades"])) for d in docs}
        difficulty[qid] = float(rng.normal())
    return qids, qrels, difficulty


def rankings(
    task: str, model: str, skill: float, qids, qrels, difficulty, noise_key: str | None = None
):
    """Top-10 doc ids per query; relevant docs land at ranks set by skill, difficulty and noise."""
    spec = TASKS[task]
    rng = np.random.default_rng(int(sha(f"rank:{task}:{noise_key or model}")[:8], 16))
    out = {}
    for qid in qids:
        relevant = sorted(qrels[qid])
        ranking: dict[int, str] = {}
        for doc in relevant:
            z = -skill + 0.9 * difficulty[qid] + 0.8 * float(rng.normal()) + 1.9
            rank = int(math.floor(math.exp(z)))
            while rank in ranking:
                rank += 1
            if rank < 10:
                ranking[rank] = doc
        filler = (
            f"d{int(d):04d}"
            for d in rng.permutation(spec["n_corpus"])
            if f"d{int(d):04d}" not in qrels[qid]
        )
        out[qid] = [ranking[r] if r in ranking else next(filler) for r in range(10)]
    return out


def card(task: str, k_values, limit=None) -> dict:
    spec = TASKS[task]
    record = {
        "name": task,
        "loader": "beir",
        "params": {"path": f"/data/{task}"},
        "description": spec["description"],
        "splits": ["test"],
        "main_metric": spec["main"],
        "k_values": list(k_values),
        "modality": spec["modality"],
        "size": {"queries": spec["n_queries"], "corpus": spec["n_corpus"]},
        "exclude_self": spec["modality"] == "image-to-image",
        "limit": limit,
        "aliases": [],
        "license": "CC0-1.0",
        "reference": "",
        "path": f"/work/tasks/{task}.yaml",
    }
    if spec["suite"]:
        record["suite"] = spec["suite"]
    return record


def make_result(
    task: str,
    model: str,
    *,
    skill: float | None = None,
    k_values=K_VALUES,
    limit: int | None = None,
    matryoshka: int | None = None,
    noise_key: str | None = None,
) -> Result:
    spec = TASKS[task]
    info = MODELS[model]
    qids, qrels, difficulty = task_setup(task)
    if limit is not None:
        keep = np.random.default_rng(0).permutation(len(qids))[:limit]
        qids = [qids[i] for i in sorted(keep)]
    skill = info["skill"][task] if skill is None else skill
    ranked = rankings(task, model, skill, qids, qrels, difficulty, noise_key)
    scored = score(ranked, {q: qrels[q] for q in qids}, k_values)
    model_info = {
        "type": info["type"],
        "name": model,
        "pooling": "mean" if info["type"] != "timm" else "avg",
        "max_length": 256,
        "dtype": "float32",
        "normalize": True,
        "query_prompt": None,
        "document_prompt": None,
        "device": "cpu",
        "fingerprint": sha("model:" + model),
    }
    if matryoshka is not None:
        model_info["matryoshka_dim"] = matryoshka
    n_rel = sum(sum(1 for g in qrels[q].values() if g > 0) for q in qids)
    return Result(
        task=task,
        split="test",
        model=model,
        main_metric=spec["main"],
        scores=scored.aggregate,
        per_query=scored,
        k_values=list(k_values),
        metric_definitions={name: text for name, text in METRIC_DEFINITIONS.items()},
        model_info=model_info,
        task_info={
            "card": card(task, k_values, limit),
            "data_fingerprint": sha(f"data:{task}:{limit}"),
            "n_queries": len(qids),
            "n_corpus": spec["n_corpus"],
            "n_relevant": n_rel,
            "skipped_queries_without_relevant": 0,
            "exclude_self": spec["modality"] == "image-to-image",
            "per_query_candidates": False,
            "modalities": {
                "query": spec["modality"].split("-to-")[0],
                "document": spec["modality"].split("-to-")[1],
            },
            "meta": {},
        },
        search_info={"backend": "numpy", "index": "flat", "exact": True, "k": 10},
        embedding_dim=matryoshka or info["dim"],
        seed=0,
        limit=limit,
        timings={
            "load_task": 0.01,
            "load_model": 0.5,
            "encode_queries": 0.2,
            "encode_corpus": 1.1,
            "search": 0.003,
            "score": 0.001,
        },
        environment={
            "versions": {"vembed-bench": "0.1.0", "numpy": "2.4.6"},
            "git": None,
            "hardware": {"platform": "Linux", "cpu_count": 2},
            "argv": ["vembed-bench", "eval"],
        },
        cache={"policy": "use", "hits": 0, "misses": 2},
        created_at="2025-01-01T00:00:00+00:00",
    )


def write_png(path: Path, width: int = 150, height: int = 90) -> None:
    """A small RGB PNG (a 5 x 3 grid of coloured tiles) written with zlib only."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            tile = (x // 30) + 5 * (y // 30)
            border = x % 30 in (0, 29) or y % 30 in (0, 29)
            colour = (
                (255, 255, 255)
                if border
                else ((37 * tile) % 256, (91 * tile + 60) % 256, (53 * tile + 120) % 256)
            )
            row += bytes(colour)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    png = b"\x89PNG\r\n\x1a\n" + chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    )
    png += chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def save(result: Result, root: Path) -> Path:
    return result.save(result.default_path(root))


def main() -> None:
    root = HERE
    for model, info in MODELS.items():
        if model == "text-small-ft":
            continue
        for task in info["skill"]:
            k_values = [1, 10] if (model, task) == ("clip-b32", "docs_en") else K_VALUES
            path = save(make_result(task, model, k_values=k_values), root)
            if (model, task) == ("clip-b32", "products_i2i"):
                write_png(path.with_name("test.grid.png"))
    save(make_result("faq_en", "text-small", limit=20), root / "sampled")
    base_skill = MODELS["text-base"]["skill"]["faq_en"]
    for dim, change in MATRYOSHKA.items():
        result = make_result(
            "faq_en", "text-base", skill=base_skill + change, matryoshka=dim, noise_key="text-base"
        )
        save(result, root / "matryoshka" / f"dim{dim}")
    run = root / "runs" / "text-small-faq"
    zero = save(make_result("faq_en", "text-small"), run / "eval" / "zero_shot")
    tuned = save(
        make_result("faq_en", "text-small-ft", noise_key="text-small"), run / "eval" / "fine_tuned"
    )
    comparison = {
        "schema_version": 1,
        "name": "text-small-faq",
        "pairs": [
            {"base": zero.relative_to(run).as_posix(), "tuned": tuned.relative_to(run).as_posix()}
        ],
    }
    (run / "comparison.json").write_text(json.dumps(comparison, indent=1) + "\n")
    rng = np.random.default_rng(7)
    lines = [
        json.dumps(
            {
                "step": step,
                "loss": round(2.2 * math.exp(-step / 45) + 0.35 + 0.04 * float(rng.normal()), 4),
                "lr": round(2e-5 * min(1.0, step / 20), 8),
                "epoch": round(step / 100, 3),
            }
        )
        for step in range(0, 200, 5)
    ]
    (run / "train_log.jsonl").write_text("\n".join(lines) + "\n")
    print(f"wrote fixtures under {root}")


if __name__ == "__main__":
    main()
