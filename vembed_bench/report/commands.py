"""The bodies of ``vembed-bench leaderboard`` and ``vembed-bench compare``.

``cli.py`` keeps only the typer signatures and imports this module inside
the command, so ``--help`` never loads numpy-heavy report code or matplotlib.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from vembed_bench.errors import VembedError

__all__ = ["compare_command", "leaderboard_command", "parse_suites"]


def parse_suites(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["text-en=faq_en,docs_en", ...]`` -> task -> suites."""
    tasks: dict[str, set[str]] = defaultdict(set)
    for spec in specs:
        name, sep, members = spec.partition("=")
        names = [m.strip() for m in members.split(",") if m.strip()]
        if not sep or not name.strip() or not names:
            raise VembedError(f"--suite '{spec}' must look like NAME=TASK1,TASK2")
        for task in names:
            tasks[task].add(name.strip())
    return {task: sorted(s) for task, s in tasks.items()}


def leaderboard_command(
    results: Sequence[Path],
    out: Path,
    *,
    suite: Sequence[str] = (),
    seed: int = 0,
    resamples: int = 10_000,
    plots: bool = True,
    html: bool = True,
) -> list[Path]:
    """Write the leaderboard folder and print where it went."""
    from vembed_bench.report.build import write_leaderboards

    if resamples < 1:
        raise VembedError(f"--resamples must be >= 1, got {resamples}")
    written = write_leaderboards(
        list(results) or [Path("results")],
        out,
        suites=parse_suites(suite) or None,
        seed=seed,
        n_resamples=resamples,
        plots=plots,
        html=html,
    )
    counts = defaultdict(int)
    for path in written:
        counts[path.suffix] += 1
    summary = ", ".join(f"{n} {suffix[1:]}" for suffix, n in sorted(counts.items()))
    print(f"wrote {len(written)} files to {out} ({summary})")
    print(f"overview: {Path(out) / 'README.md'}")
    if html:
        print(f"report:   {Path(out) / 'report.html'}")
    return written


def compare_command(
    result_a: Path,
    result_b: Path,
    *,
    out: Path | None = None,
    seed: int = 0,
    resamples: int = 10_000,
) -> str:
    """Print (and with ``out`` write) the paired comparison table of B against A."""
    from vembed_bench.report.collect import read_result_file
    from vembed_bench.report.comparison import comparison_table
    from vembed_bench.report.files import write_text
    from vembed_bench.report.leaderboard import system_key, system_labels

    if resamples < 1:
        raise VembedError(f"--resamples must be >= 1, got {resamples}")
    a, b = read_result_file(result_a).result, read_result_file(result_b).result
    labels = system_labels([a, b])
    label_a, label_b = labels[system_key(a)], labels[system_key(b)]
    if label_a == label_b:
        label_a, label_b = f"A: {label_a}", f"B: {label_b}"
    text = comparison_table(
        a, b, base_label=label_a, tuned_label=label_b, seed=seed, n_resamples=resamples
    )
    print(text, end="")
    if out is not None:
        write_text(Path(out), text)
    return text
