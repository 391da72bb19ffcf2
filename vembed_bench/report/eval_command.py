"""``vembed-bench eval``: run the pairs, then print what a person (or a script, with ``--json``) needs.

One pair prints its metric table (a suite its members' tables and the combined
score, Matryoshka dims one table of sizes); a sweep prints one line per pair as
it ends and a models × tasks table of main scores at the end. With ``--json``
stdout holds only JSON. The exit code is 0 when every pair succeeded, 1 when any
failed (the others still ran and were written), 2 for bad input found before
any work.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from rich.console import Console

from vembed_bench.options import EncoderOptions, EvalOptions


def run_eval(tasks: Sequence[str], benchmarks: Sequence[str], models: Sequence[str],
             names: Sequence[str | None], eval_options: EvalOptions, encoder_options: EncoderOptions, *,
             dry_run: bool = False, json_output: bool = False) -> int:
    """Run and report; returns the exit code."""
    from vembed_bench.data.benchmarks import resolve_benchmark
    from vembed_bench.evaluation.runner import ModelSpec, pair_count, resolve_tasks, run, unique_models
    from vembed_bench.report.console import outcome_line
    from vembed_bench.report.progress import pair_bar

    all_tasks = list(tasks)
    for name in benchmarks:
        all_tasks.extend(resolve_benchmark(name).tasks)
    specs = [ModelSpec(source, name) for source, name in zip(models, names)]
    stdout, stderr = Console(), Console(stderr=True)
    cards, specs = resolve_tasks(all_tasks), unique_models(specs)
    total = pair_count(specs, cards, eval_options)
    many = len(specs) * len(cards) > 1 or dry_run
    bar = pair_bar(total, eval_options.show_progress and not dry_run)

    def on_pair(outcome: Any) -> None:
        bar.update(1)
        if many and not json_output:
            stderr.print(outcome_line(outcome), soft_wrap=True, highlight=False)

    try:
        result_set = run(specs, cards, eval_options, encoder_options, dry_run=dry_run, on_pair=on_pair)
    finally:
        bar.close()
    partial = False
    if not many:  # one model on one task: its failure is the command's error (one line, exit 2)
        failed = next((o for o in result_set if o.exception is not None), None)
        if failed is not None and all(o.result is None for o in result_set):
            raise failed.exception
        if failed is not None:  # some --dims sizes were written before one failed: a sweep's exit 1
            partial = True
            for outcome in result_set.failed:
                stderr.print(outcome_line(outcome), soft_wrap=True, highlight=False)
    if json_output:
        print(result_set[-1].to_json() if not many else result_set.to_json())
        return 0 if result_set.ok else 1
    if not many:
        _print_single(result_set, stdout)
        if partial:
            stderr.print(f"{len(result_set.failed)} of {len(result_set)} sizes failed; the others were written",
                         highlight=False)
        return 1 if partial else 0
    if not dry_run:
        _print_details(result_set, stdout)
        from vembed_bench.report.console import sweep_table

        stdout.print(sweep_table(result_set))
    if result_set.failed:
        stderr.print(f"[red]{len(result_set.failed)} of {len(result_set)} pairs failed[/]; the others were "
                     "written", highlight=False)
        return 1
    return 0


def _print_single(result_set: Any, console: Console) -> None:
    """One model on one task: its table(s); a suite's members then the combined score."""
    from vembed_bench.evaluation.suites import SuiteResult
    from vembed_bench.report.console import dims_table, print_result, print_suite

    for outcome in result_set:
        if outcome.status == "reused":
            print(f"reused {outcome.path} ({outcome.note}); --overwrite-strategy always recomputes",
                  file=sys.stderr)
    results = [o.result for o in result_set if o.result is not None and not isinstance(o.result, SuiteResult)]
    if len(results) > 1 and any(r.model_info.get("matryoshka_dim") for r in results):
        console.print(dims_table(results))
        return
    for outcome in result_set:
        if isinstance(outcome.result, SuiteResult):
            print_suite(outcome.result, console=console)
            if outcome.path:
                console.print(f"suite file: {outcome.path}", highlight=False)
        elif outcome.result is not None:
            if len(result_set) > 1:
                console.print(f"[bold]{outcome.task}[/]")
            print_result(outcome.result, str(outcome.path) if outcome.path else None, console=console)


def _print_details(result_set: Any, console: Console) -> None:
    """Full tables where they add something: each suite's breakdown, each task's Matryoshka sizes."""
    from vembed_bench.evaluation.suites import SuiteResult
    from vembed_bench.report.console import dims_table, print_suite

    by_task: dict[tuple[str, str], list[Any]] = {}
    for outcome in result_set:
        if isinstance(outcome.result, SuiteResult):
            print_suite(outcome.result, console=console)
        elif outcome.result is not None:
            by_task.setdefault((outcome.model, outcome.task), []).append(outcome.result)
    for results in by_task.values():
        if len(results) > 1 and any(r.model_info.get("matryoshka_dim") for r in results):
            console.print(dims_table(results))
