"""The ``vembed-bench`` command line: parse arguments, call the API, print.

Only light modules are imported at start-up, so ``--help`` stays fast; torch and
friends load inside the commands that need them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from vembed_bench.errors import VembedError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Benchmark and evaluate embedding models (text, image, image-text, LLM, VLM).")

_K_HELP = "Comma-separated K values (default: the task card's)."
_LIST_HELP = "Repeatable; also comma-separated lists and @FILE (one per line)."


@dataclass
class _Settings:
    """Global flags: how chatty the run is."""

    verbosity: int = 1  # 0: errors only (-q), 1: stage messages and progress, 2+: details (-v, -vv)


_SETTINGS = _Settings()


def _version(value: bool) -> None:
    if value:
        from vembed_bench import __version__

        typer.echo(f"vembed-bench {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr; no progress bars."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr (-vv: debug)."),
) -> None:
    """Benchmark and evaluate embedding models (text, image, image-text, LLM, VLM)."""
    _SETTINGS.verbosity = 0 if quiet else 1 + verbose
    setup_logging(_SETTINGS.verbosity)


def setup_logging(verbosity: int) -> None:
    """Stage messages and warnings on stderr: errors only at 0, stages at 1, everything at 3."""
    from vembed_bench.report.progress import configure_logging

    configure_logging(verbosity)


def _expand(values: Optional[list[str]], flag: str) -> list[str]:
    """Repeated flags, comma-separated lists and @FILE lists (one entry per line, # comments)."""
    items: list[str] = []
    for value in values or []:
        if not value.strip():
            raise VembedError(f"{flag} is given an empty value; pass a name or path, or leave the flag out")
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                raise VembedError(f"{flag} {value}: cannot read the list file ({err})") from None
            entries = [line.split("#", 1)[0].strip() for line in lines]
            items.extend(e for e in entries if e)
        elif "," in value and not Path(value).exists():
            items.extend(part.strip() for part in value.split(",") if part.strip())
        else:
            items.append(value)
    return items


@app.command("eval")
def eval_command(
    task: Optional[list[str]] = typer.Option(None, "--task", "-t",
                                             help=f"Task card name, card path, or BEIR folder. {_LIST_HELP}"),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m",
                                              help=f"Model folder (or hub id when online). {_LIST_HELP}"),
    benchmark: Optional[list[str]] = typer.Option(None, "--benchmark", "-b",
                                                  help="Benchmark card: a named list of tasks (e.g. vembed-core)."),
    model_name: Optional[list[str]] = typer.Option(
        None, help="Display name in results and tables (one per --model, in order)."),
    split: Optional[str] = typer.Option(None, help="Split to evaluate (default: the card's first)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate a seeded sample of N queries."),
    seed: int = typer.Option(0, help="Seed for --limit sampling."),
    k: Optional[str] = typer.Option(None, "--k", help=_K_HELP),
    main_metric: Optional[str] = typer.Option(None, help="Override the card's main metric."),
    backend: str = typer.Option("auto", help="Search backend: auto (GPU if any, else the faster of faiss and "
                                "numpy here, measured once), faiss, torch, numpy."),
    index: str = typer.Option("flat", help="Index: flat (exact), hnsw, ivf, or a faiss factory string (binary: "
                              "BFlat, BIVF1024...); approximate ones record their recall against exact search."),
    batch_size: str = typer.Option(
        "auto", help="Encoding batch size: a positive integer, or auto (picked from free memory: halved on GPU "
                     "out-of-memory and remembered per model and device; from available RAM on CPU)."),
    cache: str = typer.Option("use", help="Embedding cache policy: use, refresh, off."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder (default ~/.cache/vembed-bench)."),
    results_dir: Path = typer.Option(Path("results"), help="Where result files are written."),
    overwrite_strategy: str = typer.Option(
        "only-missing", help="When a result with the same identity exists: only-missing (reuse it if weights, "
                             "data and settings are identical), always (recompute), never (keep it), "
                             "only-cache (run nothing)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pairs and what would be run or reused."),
    json_output: bool = typer.Option(False, "--json", help="Print the summary (or sweep table) as JSON on stdout."),
    save_predictions: bool = typer.Option(
        False, help="Also write the top-K per query as a TREC run file beside each result."),
    reference_model: Optional[str] = typer.Option(
        None, help="Compare with the task card's published scores of this model (name or hub id)."),
    model_type: Optional[str] = typer.Option(None, help="Override model type detection."),
    pooling: Optional[str] = typer.Option(None, help="Pooling for HF encoders: cls, mean, last."),
    query_prompt: Optional[str] = typer.Option(None, help="Prefix or {text}/{instruction} template for queries."),
    document_prompt: Optional[str] = typer.Option(None, help="Prefix or template for documents."),
    max_length: Optional[int] = typer.Option(None, help="Truncate inputs to this many tokens."),
    device: Optional[str] = typer.Option(
        None, help="cpu, cuda, cuda:1, mps (default: best available); a comma list (cuda:0,cuda:1) encodes "
                   "data-parallel, one worker process per device."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16, float16 (default: bf16 on GPU)."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model folder to run."),
    dims: Optional[str] = typer.Option(
        None, help="Matryoshka: evaluate these leading-dimension sizes (e.g. 1024,512,256) from one encode."),
    attention: Optional[str] = typer.Option(None, help="LLM encoders: causal or bidirectional attention."),
    instruction: Optional[str] = typer.Option(None, help="LLM encoders: default query instruction."),
    padding_side: Optional[str] = typer.Option(None, help="LLM encoders: left or right padding."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    data_root: Optional[Path] = typer.Option(
        None, help="Folder holding downloaded benchmark data (default: $VEMBED_DATA_ROOT)."),
    skip_bad_images: bool = typer.Option(
        False, help="Image models: skip (and count) corrupt or missing images instead of stopping."),
    image_workers: Optional[int] = typer.Option(None, help="Image models: DataLoader workers for decoding."),
    grid: int = typer.Option(0, help="Save a PNG of N queries with their top-5 results beside the result."),
    maxsim: str = typer.Option(
        "exact", help="Multi-vector (ColBERT/ColPali) models: MaxSim search, exact (every document) or "
                      "faiss (FAISS token candidates, then exact MaxSim rerank)."),
    candidate_depth: int = typer.Option(
        256, help="Multi-vector --maxsim faiss: nearest document tokens fetched per query token."),
    ray: bool = typer.Option(False, "--ray", help="Encode on a local Ray cluster started for the run "
                                                  "(needs the [ray] extra)."),
    ray_address: Optional[str] = typer.Option(
        None, help="Encode on a running Ray cluster: its address (HEAD:6379, ray://HEAD:10001, auto)."),
    ray_workers: Optional[int] = typer.Option(
        None, help="Ray encoding workers (default: one per GPU of the cluster, else one per node)."),
) -> None:
    """Encode tasks' queries and corpora, search, and score: one model on one task, or a sweep."""
    from vembed_bench.options import EncoderOptions, EvalOptions

    show_progress = progress and _SETTINGS.verbosity > 0
    eval_options = EvalOptions(
        split=split, limit=limit, seed=seed, k_values=k, main_metric=main_metric, backend=backend, index=index,
        batch_size=batch_size, cache=cache, cache_dir=cache_dir, results_dir=results_dir,
        show_progress=show_progress, grid=grid, maxsim=maxsim, candidate_depth=candidate_depth, dims=dims,
        overwrite=overwrite_strategy, save_predictions=save_predictions, reference_model=reference_model,
        ray=ray_address or ("local" if ray else None), ray_workers=ray_workers,
    )
    encoder_options = EncoderOptions(
        model_type=model_type, pooling=pooling, query_prompt=query_prompt, document_prompt=document_prompt,
        max_length=max_length, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
        show_progress=show_progress, attention=attention, instruction=instruction, padding_side=padding_side,
        skip_bad_images=skip_bad_images, num_workers=image_workers,
    )
    tasks, models, names = _expand(task, "--task"), _expand(model, "--model"), _expand(model_name, "--model-name")
    if not models:
        raise VembedError("missing --model: give a model folder (or several: -m A -m B, -m A,B or -m @models.txt)")
    if not tasks and not benchmark:
        raise VembedError("missing --task (or --benchmark): give a task card name, card path or BEIR folder")
    if names and len(names) != len(models):
        raise VembedError(f"--model-name given {len(names)} times for {len(models)} models; give one per --model")
    from vembed_bench.data.data_root import set_data_root
    from vembed_bench.report.eval_command import run_eval

    set_data_root(data_root)
    code = run_eval(tasks, benchmark or [], models, names or [None] * len(models), eval_options, encoder_options,
                    dry_run=dry_run, json_output=json_output)
    if code:
        raise typer.Exit(code)


@app.command("tradeoffs")
def tradeoffs_cli(
    task: str = typer.Option(..., "--task", "-t", help="Task card name, card path, or BEIR folder."),
    model: str = typer.Option(..., "--model", "-m", help="Model folder (or hub id when online)."),
    model_name: Optional[str] = typer.Option(None, help="Display name in the result and its folder name."),
    dims: Optional[str] = typer.Option(
        None, help="Leading-dimension sizes, truncated and renormalised from one encode (e.g. full,256,128; "
                   "default: full, half and quarter)."),
    precisions: str = typer.Option(
        "float32,float16,int8,binary", help="Stored precisions: float32, float16, int8 (per-dimension symmetric "
                                            "scale), binary (sign bits, then float32 rescoring)."),
    indexes: str = typer.Option(
        "flat,hnsw", help="Indexes: flat, hnsw, ivfpq (product-quantised: its own precision; needs a corpus of "
                          "at least 9,984 rows)."),
    factory: Optional[List[str]] = typer.Option(
        None, "--factory", help="A faiss index_factory string to measure as well, e.g. 'HNSW32,SQ8' or "
                                "'IVF256,PQ16' (repeat the flag for more; trained on the corpus)."),
    rescore_factor: int = typer.Option(
        10, help="Binary: rescore this many times the main metric's cutoff of Hamming candidates in float32."),
    latency_queries: int = typer.Option(200, help="Queries timed one at a time (a seeded sample)."),
    warmup: int = typer.Option(10, help="Untimed searches before each variant's latency is timed."),
    threads: Optional[int] = typer.Option(None, help="faiss threads while building and timing (1: single thread; "
                                                     "default: faiss's)."),
    hnsw_m: int = typer.Option(32, help="HNSW: links per node."),
    ef_construction: int = typer.Option(40, help="HNSW: candidate list while building."),
    ef_search: int = typer.Option(64, help="HNSW: candidate list while searching (at least the rows fetched)."),
    nprobe: int = typer.Option(16, help="IVF-PQ: inverted lists visited per query."),
    split: Optional[str] = typer.Option(None, help="Split to evaluate (default: the card's first)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate a seeded sample of N queries."),
    seed: int = typer.Option(0, help="Seed of --limit and of the latency sample."),
    k: Optional[str] = typer.Option(None, "--k", help=_K_HELP),
    main_metric: Optional[str] = typer.Option(None, help="Override the card's main metric."),
    backend: str = typer.Option("auto", help="Search backend of the exact float32 reference."),
    batch_size: str = typer.Option("auto", help="Encoding batch size: a positive integer, or auto (as in eval)."),
    cache: str = typer.Option("use", help="Embedding cache policy: use, refresh, off."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder (default ~/.cache/vembed-bench)."),
    results_dir: Path = typer.Option(Path("results"), help="Where the report is written (beside the model's "
                                                          "results)."),
    plots: bool = typer.Option(True, help="Write the plot (PNG and SVG; needs matplotlib)."),
    json_output: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    model_type: Optional[str] = typer.Option(None, help="Override model type detection."),
    pooling: Optional[str] = typer.Option(None, help="Pooling for HF encoders: cls, mean, last."),
    query_prompt: Optional[str] = typer.Option(None, help="Prefix or {text}/{instruction} template for queries."),
    document_prompt: Optional[str] = typer.Option(None, help="Prefix or template for documents."),
    max_length: Optional[int] = typer.Option(None, help="Truncate inputs to this many tokens."),
    device: Optional[str] = typer.Option(None, help="Encoding device: cpu, cuda, cuda:1, mps."),
    dtype: Optional[str] = typer.Option(None, help="float32, bfloat16, float16 (default: bf16 on GPU)."),
    trust_remote_code: bool = typer.Option(False, help="Allow model code from the model folder to run."),
    data_root: Optional[Path] = typer.Option(
        None, help="Folder holding downloaded benchmark data (default: $VEMBED_DATA_ROOT)."),
) -> None:
    """Quality, latency and memory across embedding dims, precisions and indexes, from one encode."""
    from vembed_bench.options import EncoderOptions, EvalOptions
    from vembed_bench.evaluation.tradeoffs import TradeoffOptions

    show_progress = _SETTINGS.verbosity > 0
    options = TradeoffOptions(
        dims=dims, precisions=precisions, indexes=indexes, factories=tuple(factory or ()), rescore_factor=rescore_factor,
        latency_queries=latency_queries, warmup=warmup, threads=threads, hnsw_m=hnsw_m,
        ef_construction=ef_construction, ef_search=ef_search, nprobe=nprobe,
    )
    eval_options = EvalOptions(split=split, limit=limit, seed=seed, k_values=k, main_metric=main_metric,
                               backend=backend, batch_size=batch_size, cache=cache, cache_dir=cache_dir,
                               results_dir=results_dir, show_progress=show_progress)
    encoder_options = EncoderOptions(
        model_type=model_type, pooling=pooling, query_prompt=query_prompt, document_prompt=document_prompt,
        max_length=max_length, device=device, dtype=dtype, trust_remote_code=trust_remote_code,
        show_progress=show_progress,
    )
    from vembed_bench.data.data_root import set_data_root
    from vembed_bench.report.tradeoffs import print_report

    set_data_root(data_root)
    print_report(task, model, model_name, options, eval_options, encoder_options, plots=plots,
                 json_output=json_output)


@app.command("demo")
def demo_command(
    results_dir: Path = typer.Option(Path("results"), help="Where result files are written."),
    cache: str = typer.Option("use", help="Embedding cache policy: use, refresh, off."),
) -> None:
    """Evaluate the shipped all-MiniLM-L6-v2 on the shipped CPython FAQ task, offline."""
    from vembed_bench.demo import DEMO_MODEL_NAME, DEMO_TASK, demo_model_path
    from vembed_bench.report.eval_command import run_eval
    from vembed_bench.options import EncoderOptions, EvalOptions

    show = _SETTINGS.verbosity > 0
    run_eval([DEMO_TASK], [], [str(demo_model_path())], [DEMO_MODEL_NAME],
             EvalOptions(results_dir=results_dir, cache=cache, show_progress=show), EncoderOptions(show_progress=show))


@app.command("prepare")
def prepare_cli(
    kind: str = typer.Argument(..., help="sop, flickr30k (Karpathy JSON), imagefolder, fashion-mnist, tuxpaint; models: efficientnet-lite0, smollm2."),
    source: Optional[Path] = typer.Argument(None, help="The raw dataset (folder or JSON); optional for apt data."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Parent folder for the task folders."),
    data_root: Optional[Path] = typer.Option(None, help="Default for --out (default: $VEMBED_DATA_ROOT)."),
    split: str = typer.Option("test", help="Split to convert."),
    per_class: int = typer.Option(100, help="fashion-mnist: images sampled per class."),
    seed: int = typer.Option(0, help="fashion-mnist: sampling seed."),
) -> None:
    """Convert raw image datasets (SOP, Karpathy captions, ImageFolder, ...) to BEIR-with-images folders."""
    from vembed_bench.data.data_root import set_data_root
    from vembed_bench.prepare.commands import prepare_command

    set_data_root(data_root)
    for folder in prepare_command(kind, source, out, split=split, per_class=per_class, seed=seed):
        if (folder / "card.yaml").is_file():
            typer.echo(f"wrote {folder} (evaluate with --task {folder / 'card.yaml'})")
        else:
            typer.echo(f"wrote model folder {folder} (use it with --model {folder})")


@app.command("tasks")
def tasks_command(
    json_output: bool = typer.Option(False, "--json", help="Print the cards (and benchmarks) as JSON."),
) -> None:
    """List the known task cards and benchmark cards."""
    from vembed_bench.data.benchmarks import list_benchmarks
    from vembed_bench.data.cards import list_cards

    cards, benchmarks = list_cards(), list_benchmarks()
    if json_output:
        import json

        typer.echo(json.dumps({"tasks": [c.to_dict() for c in cards],
                               "benchmarks": [{"name": b.name, "tasks": list(b.tasks), "description": b.description,
                                               "path": b.path} for b in benchmarks]}, indent=1, ensure_ascii=False))
        return
    from rich.console import Console

    from vembed_bench.report.console import benchmarks_table, tasks_table

    console = Console()
    console.print(tasks_table(cards))
    if benchmarks:
        console.print(benchmarks_table(benchmarks))


@app.command("leaderboard")
def leaderboard_cli(
    results: Optional[list[Path]] = typer.Argument(None, help="Result folders or files (default: results)."),
    out: Path = typer.Option(Path("leaderboards"), "--out", "-o",
                             help="Folder for the Markdown pages, plots/ and report.html."),
    suite: Optional[list[str]] = typer.Option(
        None, "--suite", help="Suite average NAME=TASK1,TASK2 (repeatable; default: the task cards' 'suite' key)."),
    seed: int = typer.Option(0, help="Seed of the bootstrap and permutation resampling."),
    resamples: int = typer.Option(10_000, help="Bootstrap and permutation resamples per delta."),
    plots: bool = typer.Option(True, help="Write PNG plots (needs matplotlib)."),
    html: bool = typer.Option(True, help="Write the self-contained report.html."),
) -> None:
    """Write leaderboards: one Markdown page per task, an overview, training-run comparisons, plots, HTML."""
    from vembed_bench.report.commands import leaderboard_command

    leaderboard_command(results or [], out, suite=suite or [], seed=seed, resamples=resamples,
                        plots=plots, html=html)


@app.command("compare")
def compare_cli(
    result_a: Path = typer.Argument(..., help="Baseline result file (e.g. zero-shot)."),
    result_b: Path = typer.Argument(..., help="Result file compared with it (e.g. fine-tuned)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the table to this Markdown file."),
    seed: int = typer.Option(0, help="Seed of the bootstrap and permutation resampling."),
    resamples: int = typer.Option(10_000, help="Bootstrap and permutation resamples per delta."),
) -> None:
    """Paired comparison of two results on one task: B - A per metric, 95% CI and p-value."""
    from vembed_bench.report.commands import compare_command

    compare_command(result_a, result_b, out=out, seed=seed, resamples=resamples)


@app.command("diff")
def diff_cli(
    result_a: Path = typer.Argument(..., help="First result file."),
    result_b: Path = typer.Argument(..., help="Second result file."),
    top: int = typer.Option(10, help="Queries listed among the biggest gains and losses."),
    json_output: bool = typer.Option(False, "--json", help="Print the differences as JSON."),
) -> None:
    """Why two results differ: settings, fingerprints, versions, and the queries that won or lost."""
    from vembed_bench.report.diff import diff_results, render
    from vembed_bench.results import load_result

    if top < 0:
        raise VembedError(f"--top {top} must be 0 or a positive number of queries")
    diff = diff_results(load_result(result_a), load_result(result_b))
    if json_output:
        import json

        typer.echo(json.dumps({"a": str(result_a), "b": str(result_b), **diff.to_dict(top)}, indent=1,
                              default=str, ensure_ascii=False))
        return
    for line in render(diff, str(result_a), str(result_b), top=top):
        typer.echo(line)


@app.command("train")
def train_cli(
    recipe: Path = typer.Argument(..., help="Recipe YAML (see trainers/)."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help="Override a recipe key: key.sub=value (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate and print the resolved recipe; train nothing."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run folder."),
    progress: bool = typer.Option(True, help="Show progress bars."),
    data_root: Optional[Path] = typer.Option(
        None, "--data-root", help="Where prepared benchmark data lives (@data_root/ paths, eval tasks)."
    ),
) -> None:
    """Zero-shot eval, fine-tune, fine-tuned eval, and a comparison table in the run folder."""
    from vembed_bench.data.data_root import set_data_root
    from vembed_bench.train.commands import train_command

    set_data_root(data_root)
    train_command(recipe, set_ or [], dry_run=dry_run, resume=resume, overwrite=overwrite, progress=progress)


@app.command("merge")
def merge_cli(
    adapter: Path = typer.Argument(..., help="A LoRA adapter folder (e.g. runs/NAME/model-adapter)."),
    base: Path = typer.Option(..., "--base", help="The sentence-transformers / HF folder it was trained on."),
    out: Path = typer.Option(..., "--out", "-o", help="Where the merged plain model folder is written."),
) -> None:
    """Fold a LoRA adapter into plain Hugging Face / sentence-transformers weights."""
    from vembed_bench.train.commands import merge_command

    merge_command(adapter, base, out)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2; usage errors show the
    usage line and one error line."""
    setup_logging(1)
    try:
        code = app(standalone_mode=False)  # click returns typer.Exit's code instead of raising it
    except VembedError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted; finished cache shards are kept and a re-run resumes from them", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:
        if not _is_click_error(err):
            raise
        _show_usage_error(err)
        sys.exit(getattr(err, "exit_code", 2) or 2)
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_click_error(err: BaseException) -> bool:
    """click's own exceptions and the copies bundled inside typer (not subclasses of click's)."""
    import click

    if isinstance(err, click.ClickException):
        return True
    return any(cls.__name__ == "ClickException" for cls in type(err).__mro__)


def _show_usage_error(err: BaseException) -> None:
    ctx = getattr(err, "ctx", None)
    message = " ".join(err.format_message().split()) if hasattr(err, "format_message") else str(err)
    if ctx is not None:
        print(ctx.get_usage().splitlines()[0], file=sys.stderr)
        print(f"error: {message} (see {ctx.command_path} --help)", file=sys.stderr)
    else:
        print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    main()
