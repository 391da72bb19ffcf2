"""Assemble the parts' fragments into ``$OUT/gpu.md`` and ``$OUT/gpu.json``; print gpu.md.

No torch import here: the report must come out even when every part crashed. A part with
no fragment is reported from ``status.tsv`` (exit code, seconds, limit; 124/137 = killed at
its time limit) and the tail of its log.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

PARTS = {
    "env": "Environment",
    "prepare": "Model folders (random weights)",
    "encode_minilm": "1a. all-MiniLM-L6-v2 encoding: vembed-bench vs SentenceTransformer.encode",
    "encode_decoder": (
        "1b. Qwen2.5-0.5B-shaped decoder encoding: LLMEncoder vs plain transformers "
        "and SentenceTransformer"
    ),
    "search": "2. Exact search on the GPU: TorchBackend vs the matmul rate",
    "faiss_gpu": "3. faiss-GPU",
    "qlora": "4. QLoRA training steps (vembed-bench train code)",
    "bidirectional": "5. Bidirectional attention on the GPU",
    "auto_batch": "6. --batch-size auto: halving on out-of-memory, memo, same vectors",
}


def read_status(path: Path) -> dict[str, dict]:
    found = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, rc, seconds, limit = line.split("\t")
            found[name] = {"rc": rc, "seconds": int(seconds), "limit": int(limit)}
    return found


def missing_fragment(name: str, status: dict | None, log: Path) -> dict:
    if status is None:
        why = "not run"
    elif status["rc"] == "deadline":
        why = (
            "not started: too little of the overall time limit was left "
            f"(its own limit {status['limit']} s)"
        )
    elif status["rc"] in ("124", "137"):
        why = f"killed at its time limit of {status['limit']} s"
    else:
        why = (
            f"exited with code {status['rc']} after {status['seconds']} s "
            "without writing its result"
        )
    tail = (
        "\n".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:])
        if log.is_file()
        else ""
    )
    md = f"**failed**: {why}.\n" + (f"\n```\n{tail}\n```\n" if tail else "")
    return {
        "part": name,
        "title": PARTS[name],
        "status": "failed",
        "markdown": md,
        "error": why,
        "data": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--started", type=float, required=True, help="epoch seconds at the start of run.sh"
    )
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    status = read_status(args.work / "status.tsv")
    fragments = {}
    for name in PARTS:
        path = args.work / "parts" / f"{name}.json"
        fragments[name] = (
            json.loads(path.read_text(encoding="utf-8"))
            if path.is_file()
            else missing_fragment(name, status.get(name), args.work / "logs" / f"{name}.log")
        )
    total = time.time() - args.started
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(args.started))
    device = fragments["env"].get("device", "unknown")
    lines = [
        f"# vembed-bench GPU check ({'SMOKE run, tiny sizes' if args.smoke else 'real sizes'})",
        "",
        (
            f"Started {when}; device `{device}`; whole script {total:.0f} s (pip installs and "
            "model building included). Made by `benchmarks/gpu/run.sh`; raw numbers in gpu.json."
        ),
        "",
        "| part | status | seconds (limit) |",
        "|---|---|--:|",
    ]
    for name, frag in fragments.items():
        seconds, limit = (status.get(name, {}).get(key, "?") for key in ("seconds", "limit"))
        lines.append(f"| {PARTS[name]} | {frag['status']} | {seconds} ({limit}) |")
    for name, frag in fragments.items():
        lines += ["", f"## {PARTS[name]}", "", frag["markdown"].rstrip()]
    text = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "schema": 1,
        "smoke": args.smoke,
        "started": args.started,
        "seconds": round(total, 1),
        "status": status,
        "parts": fragments,
    }
    for name, content in (("gpu.md", text), ("gpu.json", json.dumps(record, indent=1) + "\n")):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        tmp.replace(args.out / name)
    print(text, flush=True)


if __name__ == "__main__":
    main()
