"""Wall-clock race: one sweep command against the same pairs as separate commands.

2 models × 3 tasks, as a user would run them, cold (each side starts with an
empty embedding cache and an empty results folder):

  (a) separate  six ``vembed-bench eval -t T -m M`` processes, one after the other
                (sharing their cache folder, as consecutive commands would);
  (b) sweep     one ``vembed-bench eval -m A -m B -t X -t Y -t Z`` process.

Models: the real all-MiniLM-L6-v2 (sentence-transformers folder) and the same
weights saved as a plain Hugging Face folder read with CLS pooling (a second,
different model). Tasks, all from the shipped CPython FAQ (real data):
``faq-test`` (test questions -> answers), ``faq-train`` (train questions -> the same
answers) and ``faq-reverse`` (answers -> questions), so the sweep can show both of
its savings: one model load per model, and items shared between tasks (the
answers) encoded once. The sides alternate (a, b, a, b, ...) so machine load hits
both alike; the medians are compared, and every pair's main score must be equal on
both sides.

    .venv/bin/python benchmarks/bench_sweep.py --repeats 3   # writes benchmarks/results/sweep_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FAQ = REPO / "vembed_bench" / "datasets" / "python_faq"
OUT = REPO / "benchmarks" / "results" / "sweep_cpu.md"
TARGET = 0.5


def build_tasks(root: Path) -> list[Path]:
    """Three BEIR folders from the FAQ: test and train questions, and the reverse direction."""
    tasks = []
    for name, split in (("faq-test", "test"), ("faq-train", "train")):
        folder = root / name
        (folder / "qrels").mkdir(parents=True)
        for file in ("corpus.jsonl", "queries.jsonl"):
            shutil.copy(FAQ / file, folder / file)
        shutil.copy(FAQ / "qrels" / f"{split}.tsv", folder / "qrels" / "test.tsv")
        tasks.append(folder)
    reverse = root / "faq-reverse"
    (reverse / "qrels").mkdir(parents=True)
    shutil.copy(FAQ / "corpus.jsonl", reverse / "queries.jsonl")
    shutil.copy(FAQ / "queries.jsonl", reverse / "corpus.jsonl")
    rows = ["query-id\tcorpus-id\tscore"]
    for split in ("test", "train"):
        for line in (FAQ / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
            question, answer, grade = line.split("\t")
            rows.append(f"{answer}\t{question}\t{grade}")
    (reverse / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    tasks.append(reverse)
    return tasks


def build_models(root: Path) -> list[Path]:
    """MiniLM as shipped (sentence-transformers) and its transformer saved as a plain HF folder."""
    sys.path.insert(0, str(REPO))
    from vembed_bench.demo import demo_model_path

    minilm = demo_model_path()
    plain = root / "minilm-hf-cls"
    plain.mkdir()
    for file in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                 "special_tokens_map.json"):
        if (minilm / file).is_file():
            shutil.copy(minilm / file, plain / file)
    return [minilm, plain]


def run(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vembed_bench.cli", "-q", *args], env=env, cwd=REPO,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"command failed ({done.returncode}): {' '.join(args)}\n{done.stderr[-2000:]}")
    return seconds


def scores(results: Path) -> dict[str, float]:
    found = {}
    for path in sorted(results.rglob("*.json")):
        record = json.loads(path.read_text())
        found[f"{path.parent.parent.name}/{record['task']}"] = record["scores"][record["main_metric"]]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    tasks, models = build_tasks(work / "tasks"), build_models(work)
    names = ["all-MiniLM-L6-v2", "minilm-hf-cls"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    times: dict[str, list[float]] = {"separate": [], "sweep": []}
    checked: dict[str, dict[str, float]] = {}
    for repeat in range(args.repeats):
        for side in ("separate", "sweep"):
            run_dir = work / f"{side}-{repeat}"
            common = ["--cache-dir", str(run_dir / "cache"), "--results-dir", str(run_dir / "results"),
                      "--device", "cpu", "--no-progress"]
            if side == "separate":
                total = 0.0
                for model, name in zip(models, names):
                    for task in tasks:
                        total += run(["eval", "-t", str(task), "-m", str(model), "--model-name", name, *common], env)
            else:
                model_args = [a for m, n in zip(models, names) for a in ("-m", str(m))]
                name_args = [a for n in names for a in ("--model-name", n)]
                task_args = [a for t in tasks for a in ("-t", str(t))]
                total = run(["eval", *model_args, *name_args, *task_args, *common], env)
            times[side].append(total)
            checked[side] = scores(run_dir / "results")
            print(f"repeat {repeat + 1} {side}: {total:.1f} s", flush=True)
    if checked["separate"] != checked["sweep"] or len(checked["sweep"]) != 6:
        raise SystemExit(f"scores differ between the sides:\n{checked}")
    separate, sweep = statistics.median(times["separate"]), statistics.median(times["sweep"])
    ratio = sweep / separate
    lines = [
        "# One sweep vs separate commands (2 models × 3 tasks, cold)",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; `python benchmarks/bench_sweep.py --repeats {args.repeats}`.",
        "",
        "| side | median wall time (s) | runs (s) |",
        "|---|--:|---|",
        f"| six separate `eval` processes | {separate:.1f} | {', '.join(f'{t:.1f}' for t in times['separate'])} |",
        f"| one sweep `eval -m A -m B -t X -t Y -t Z` | {sweep:.1f} | {', '.join(f'{t:.1f}' for t in times['sweep'])} |",
        "",
        f"Ratio sweep / separate: **{ratio:.2f}x** (target ≤ {TARGET}x: {'met' if ratio <= TARGET else 'not met'}).",
        "",
        "Main scores (equal on both sides, checked):",
        "",
        "| model / task | main score ×100 |",
        "|---|--:|",
        *(f"| {key} | {100 * value:.2f} |" for key, value in sorted(checked["sweep"].items())),
        "",
        "Where the sweep saves: each model is loaded once (not three times), the process starts and imports",
        "torch once (not six times), and the FAQ answers, documents of faq-test and faq-train and queries of",
        "faq-reverse, are encoded once per model (not three times).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
