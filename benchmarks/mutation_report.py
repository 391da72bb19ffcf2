"""Summarise mutmut runs of benchmarks/mutation.sh into a Markdown report.

For each module: killed / total, the kill rate with the mutants listed as equivalent (same
behaviour as the original, so no test can kill them) left out, and the diff of every survivor
that is not listed -- each of those is a gap in the tests. Timeouts count as killed (the
mutant made a test loop or hang), as mutmut does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections import Counter
from datetime import date
from pathlib import Path

from mutmut.stats import status_by_exit_code

KILLED = ("killed", "timeout", "caught by type check")


def read_equivalents(path: Path) -> dict[str, str]:
    """``mutant name -> one-line reason`` from a TSV (``#`` comments and blank lines skipped)."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, reason = line.partition("\t")
            out[name.strip()] = reason.strip()
    return out


def survivor_diffs(scratch: Path, module: str, names: list[str]) -> dict[str, str]:
    """The diff of each named mutant against the original (mutmut reads it from ``scratch``)."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    here = Path.cwd()
    os.chdir(scratch)
    try:
        return {name: get_diff_for_mutant(name, path=Path(module)).strip() for name in names}
    finally:
        os.chdir(here)


def module_summary(module: str, scratch: Path, equivalents: dict[str, str]) -> dict:
    meta = json.loads((scratch / "mutants" / f"{module}.meta").read_text(encoding="utf-8"))
    statuses = {name: status_by_exit_code[code] for name, code in meta["exit_code_by_key"].items()}
    counts = Counter(statuses.values())
    killed = sum(counts[s] for s in KILLED)
    survived = sorted(n for n, s in statuses.items() if s not in KILLED)
    equivalent = [n for n in survived if n in equivalents]
    gaps = [n for n in survived if n not in equivalents]
    stale = sorted(n for n in equivalents if n in statuses and statuses[n] in KILLED
                   and n.startswith(module[:-3].replace("/", ".") + "."))
    total = len(statuses)
    return {
        "module": module, "total": total, "killed": killed, "counts": counts,
        "equivalent": equivalent, "gaps": gaps, "stale": stale,
        "rate": killed / total if total else 1.0,
        "rate_eq": killed / (total - len(equivalent)) if total > len(equivalent) else 1.0,
        "diffs": survivor_diffs(scratch, module, gaps),
    }


def render(summaries: list[dict], tests: dict[str, str], equivalents: dict[str, str], command: str) -> str:
    lines = [
        "# Mutation testing of the core modules",
        "",
        f"Measured {date.today().isoformat()} with mutmut 3.8.1 on the 2-core CPU machine.",
        "Reproduce (after `uv pip install mutmut==3.8.1` into the project venv):",
        "",
        "```",
        command.strip(),
        "```",
        "",
        "mutmut changes one operator, constant, argument or call inside a function at a time",
        "(module-level constants are left alone); each mutant runs only the tests (of the files",
        "listed) that execute the mutated function. Kill rate = killed / total, a timeout counting",
        "as killed; the last column leaves out the equivalent mutants (listed below with the",
        "reason no test can tell them from the original). About 10 minutes for all modules.",
        "",
        "| module | tests | mutants | killed | survived | equivalent | kill rate | excl. equivalent |",
        "| --- | --- | --: | --: | --: | --: | --: | --: |",
    ]
    for s in summaries:
        survived = s["total"] - s["killed"]
        lines.append(
            f"| `{s['module']}` | {', '.join(f'`{t}`' for t in tests[s['module']].split())} | {s['total']} "
            f"| {s['killed']} | {survived} | {len(s['equivalent'])} | {100 * s['rate']:.1f}% "
            f"| {100 * s['rate_eq']:.1f}% |"
        )
    for s in summaries:
        lines += ["", f"## `{s['module']}`", ""]
        other = {k: v for k, v in s["counts"].items() if k not in ("killed", "survived")}
        if other:
            lines.append("Other outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())) + ".")
            lines.append("")
        if s["equivalent"]:
            lines.append("Equivalent mutants:")
            lines.append("")
            lines += [f"- `{n}`: {equivalents[n]}" for n in s["equivalent"]]
            lines.append("")
        if s["gaps"]:
            lines.append("Surviving mutants not known to be equivalent (test gaps):")
            lines.append("")
            for n in s["gaps"]:
                lines += [f"- `{n}`", "", "```diff", s["diffs"].get(n, "(no diff)"), "```", ""]
        if s["stale"]:
            lines.append("Listed as equivalent but killed now (remove from the list): "
                         + ", ".join(f"`{n}`" for n in s["stale"]) + ".")
            lines.append("")
        if not (s["equivalent"] or s["gaps"]):
            lines.append("Every mutant killed.")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--equivalents", type=Path, required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("runs", nargs="+", help="triples: module scratch-dir 'test files'")
    args = parser.parse_args()
    if len(args.runs) % 3:
        parser.error("runs come in triples: module scratch-dir 'test files'")
    equivalents = read_equivalents(args.equivalents)
    triples = [args.runs[i:i + 3] for i in range(0, len(args.runs), 3)]
    summaries = [module_summary(module, Path(scratch), equivalents) for module, scratch, _ in triples]
    tests = {module: files for module, _, files in triples}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(summaries, tests, equivalents, args.command), encoding="utf-8")
    for s in summaries:
        print(f"{s['module']}: {s['killed']}/{s['total']} killed ({100 * s['rate']:.1f}%), "
              f"{len(s['equivalent'])} equivalent ({100 * s['rate_eq']:.1f}% excl.), {len(s['gaps'])} gaps")


if __name__ == "__main__":
    main()
