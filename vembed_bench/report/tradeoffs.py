"""What a person reads of a deployment trade-off study: a table (terminal and Markdown) and a plot.

The table has one row per variant: the main metric (x100), retrieval fidelity
at the main metric's cutoff, p50/p99 batch-1 latency, batch throughput, memory,
and whether the variant is on the quality-latency (``L``) or quality-memory
(``M``) Pareto front. The plot has two panels, quality against p50 latency
and against memory (both log scale), with each front drawn as a step line.
PNG and SVG are written without timestamps, so the same report and library
versions give the same bytes (the conventions of :mod:`vembed_bench.report.plots`).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from vembed_bench.report.files import write_bytes, write_text

if TYPE_CHECKING:
    from vembed_bench.evaluation.tradeoffs import TradeoffReport, Variant

_MARKERS = {"float32": "o", "float16": "s", "int8": "^", "binary": "D", "pq": "P", "own": "X"}
_INDEX_FILL = {"flat": "full", "hnsw": "none", "ivfpq": "full"}


def format_bytes(count: float | None) -> str:
    """1536 -> '1.5 KiB' (binary units)."""
    if count is None:
        return "n/a"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def fidelity_key(report: "TradeoffReport") -> str:
    """The fidelity shown: at the main metric's cutoff when measured, else the deepest."""
    from vembed_bench.evaluation.tradeoffs import main_cutoff

    k = main_cutoff(report.main_metric, report.k_values)
    return f"fidelity@{k if k in report.k_values else max(report.k_values)}"


def _fronts(report: "TradeoffReport", variant: "Variant") -> str:
    return "".join(mark for mark, name in (("L", "latency"), ("M", "memory"))
                   if variant.label in report.pareto.get(name, ()))


def _number(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def rows(report: "TradeoffReport") -> tuple[list[str], list[list[str]]]:
    """Header and cells of the table (shared by the terminal and Markdown forms)."""
    fidelity = fidelity_key(report)
    header = ["dim", "precision", "index", f"{report.main_metric} x100", fidelity, "p50 ms", "p99 ms",
              "queries/s", "memory", "front"]
    cells = []
    for v in report.variants:
        cells.append([str(v.dim), v.precision, v.index, f"{100 * v.main_score:.2f}",
                      _number(v.fidelity.get(fidelity), 3), _number(v.latency.get("p50_ms"), 3),
                      _number(v.latency.get("p99_ms"), 3), _number(v.throughput.get("qps"), 0),
                      format_bytes(v.memory.get("total_bytes")), _fronts(report, v)])
    return header, cells


def title(report: "TradeoffReport") -> str:
    m = report.measurement
    return (f"{report.task} [{report.split}]  ·  {report.model}  ·  {m['quality_queries']} queries × "
            f"{m['corpus_rows']} docs  ·  {m['threads']} thread(s)  ·  latency on {m['latency_queries']} "
            "queries at batch 1")


def console_table(report: "TradeoffReport") -> Table:
    header, cells = rows(report)
    table = Table(title=escape(title(report)), title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i in (1, 2, 9) else "right")
    for row in cells:
        table.add_row(*(escape(c) for c in row))
    return table


def notes(report: "TradeoffReport") -> list[str]:
    """Lines under the table: the fronts' legend, skipped variants, where memory comes from."""
    lines = ["front: L = on the quality / p50-latency Pareto front, M = on the quality / memory front.",
             f"{fidelity_key(report)}: recall of the exact float32 full-dimension top-k "
             f"({report.measurement.get('fidelity_reference', '')}).",
             "memory: serialised faiss index + the float32 vectors kept for binary rescoring "
             f"(rescore depth {report.measurement.get('rescore_depth')})."]
    seen: set[str] = set()
    for skip in report.skipped:
        text = f"skipped {skip['index']} ({skip['precision']}): {skip['reason']}"
        if skip["reason"] not in seen:
            seen.add(skip["reason"])
            lines.append(text)
    return lines


def markdown(report: "TradeoffReport", plot_name: str | None = None) -> str:
    header, cells = rows(report)
    out = [f"# Deployment trade-offs: {report.model} on {report.task} [{report.split}]", "",
           title(report), "", "| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i not in (1, 2, 9) else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in cells]
    out += [""] + [f"- {line}" for line in notes(report)]
    out += ["", f"Command: `{report.command}`", ""]
    if plot_name:
        out += [f"![trade-offs]({plot_name})", ""]
    return "\n".join(out)


def _memory_unit(counts: list[float]) -> tuple[str, int]:
    """The binary unit in which the smallest memory is at least 1 (B up to GiB)."""
    smallest = min((c for c in counts if c), default=1)
    unit, size = "B", 1
    for name, bytes_ in (("KiB", 2**10), ("MiB", 2**20), ("GiB", 2**30)):
        if smallest >= bytes_:
            unit, size = name, bytes_
    return unit, size


def plot(report: "TradeoffReport", stem: Path) -> list[Path]:
    """``<stem>.png`` and ``<stem>.svg``: quality against p50 latency and against memory."""
    from matplotlib.lines import Line2D

    from vembed_bench.report.plots import _figure as figure_context

    dims = sorted({v.dim for v in report.variants}, reverse=True)
    colours = {dim: f"C{i % 10}" for i, dim in enumerate(dims)}
    unit, size = _memory_unit([v.memory.get("total_bytes") or 0 for v in report.variants])
    panels = (("latency", "p50 latency at batch 1 (ms)", lambda v: v.latency.get("p50_ms")),
              ("memory", f"memory ({unit})", lambda v: (v.memory.get("total_bytes") or 0) / size))
    written = []
    with figure_context(12.8, 4.6) as figure:
        axes = figure.subplots(1, 2, sharey=True)
        for ax, (front, xlabel, cost) in zip(axes, panels):
            for v in report.variants:
                x = cost(v)
                if x is None:
                    continue
                ax.plot([x], [100 * v.main_score], linestyle="none", marker=_MARKERS.get(v.precision, "o"),
                        color=colours[v.dim], fillstyle=_INDEX_FILL.get(v.index, "full"), markersize=7)
            on_front = [report.variant(label) for label in report.pareto.get(front, [])]
            if on_front:
                xs = [cost(v) for v in on_front]
                ax.plot(xs, [100 * v.main_score for v in on_front], color="0.3", linewidth=1,
                        drawstyle="steps-post", zorder=0)
                for v, x in zip(on_front, xs):
                    ax.annotate(v.label, (x, 100 * v.main_score), textcoords="offset points", xytext=(4, 4),
                                fontsize=7)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(f"quality vs {front} (Pareto front: line)")
        axes[0].set_ylabel(f"{report.main_metric} (×100)")
        handles = ([Line2D([], [], linestyle="none", marker="o", color=colours[d], label=f"dim {d}") for d in dims]
                   + [Line2D([], [], linestyle="none", marker=_MARKERS[p], color="0.3", label=p)
                      for p in _MARKERS if any(v.precision == p for v in report.variants)]
                   + [Line2D([], [], linestyle="none", marker="o", color="0.3", fillstyle=_INDEX_FILL[i],
                             label=f"{i} index ({'filled' if _INDEX_FILL[i] == 'full' else 'hollow'})")
                      for i in _INDEX_FILL if any(v.index == i for v in report.variants)])
        axes[1].legend(handles=handles, fontsize=7, loc="lower right")
        figure.suptitle(f"{report.model} on {report.task} [{report.split}]")
        figure.tight_layout()
        for fmt, metadata in (("png", {"Software": None}), ("svg", {"Date": None})):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, metadata=metadata)
            written.append(write_bytes(stem.with_name(f"{stem.name}.{fmt}"), buffer.getvalue()))
    return written


def write_report_files(report: "TradeoffReport", json_path: Path, *, plots: bool = True) -> list[Path]:
    """The Markdown table (``<split>.tradeoffs.md``) and, with matplotlib, the plot
    (``<split>.tradeoffs.plot.png`` / ``.svg``) beside the report's JSON file.

    The plot's name has two dots after the result's stem, so the leaderboard does
    not mistake it for a retrieval grid of the result (``<stem>.<name>.png``).
    """
    from vembed_bench.report.plots import matplotlib_available

    base = Path(json_path).with_suffix("")  # .../test.tradeoffs
    written: list[Path] = []
    plot_name = None
    if plots and report.variants and matplotlib_available():
        written += plot(report, base.with_name(f"{base.name}.plot"))
        plot_name = f"{base.name}.plot.png"
    written.insert(0, write_text(base.with_name(f"{base.name}.md"), markdown(report, plot_name)))
    return written


def print_report(task: Any, model: Any, model_name: str | None, options: Any, eval_options: Any,
                 encoder_options: Any, *, plots: bool = True, json_output: bool = False) -> "TradeoffReport":
    """``vembed-bench tradeoffs``: run the study, then print its table (or, with ``--json``, the report)."""
    import json

    from rich.console import Console

    from vembed_bench.evaluation.tradeoffs import run_tradeoffs

    report = run_tradeoffs(task, model, options=options, eval_options=eval_options,
                           encoder_options=encoder_options, model_name=model_name, plots=plots)
    if json_output:
        print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
        return report
    console = Console()
    if not console.is_terminal:  # a pipe or file: the whole table, not squeezed into 80 columns
        console = Console(width=200)
    console.print(console_table(report))
    for line in notes(report):
        console.print(line, highlight=False, soft_wrap=True)
    if eval_options.results_dir is not None:
        path = report.default_path(eval_options.results_dir)
        console.print(f"report: {path}", highlight=False, soft_wrap=True)
    return report
