"""The ``vembed-bench`` command line: parse arguments, call the API, print.

Only light modules are imported at start-up, so ``--help`` stays fast; torch and
friends load inside the commands that need them.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from vembed_bench.errors import VembedError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Benchmark and evaluate embedding models (text, image, image-text, LLM, VLM).")

_K_HELP = "Comma-separated K values (default: the task card's)."


def _parse_ks(text: Optional[str]) -> Optional[list[int]]:
    if not text:
        return None
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise VembedError(f"--k '{text}' must be comma-separated positive integers, e.g. 1,5,10") from None
    if not ks or min(ks) < 1:
        raise VembedError(f"--k '{text}' must be comma-separated positive integers, e.g. 1,5,10")
    return ks


@app.command("eval")
def eval_command(
    task: str = typer.Option(..., "--task", "-t", help="Task card name, card path, or BEIR folder."),
    model: str = typer.Option(..., "--model", "-m", help="Model folder (or hub id when online)."),
    split: Optional[str] = typer.Option(None, help="Split to evaluate (default: the card's first)."),
    limit: Optional[int] = typer.Option(None, help="Evaluate a seeded sample of N queries."),
    seed: int = typer.Option(0, help="Seed for --limit sampling."),
    k: Optional[str] = typer.Option(None, "--k", help=_K_HELP),
    main_metric: Optional[str] = typer.Option(None, help="Override the card's main metric."),
    backend: str = typer.Option("auto", help="Search backend: auto, faiss, torch, numpy."),
    index: str = typer.Option("flat", help="Index: flat (exact), hnsw, ivf, or a faiss factory string."),
    batch_size: int = typer.Option(32, help="Encoding batch size."),
    cache: str = typer.Option("use", help="Embedding cache policy: use, refresh, off."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder (default ~/.cache/vembed-bench)."),
    results_dir: Path = typer.Option(Path("results"), help="Where result files are written."),
    model_type: Optional[str] = typer.Option(None, help="Override model type detection."),
    model_name: Optional[str] = typer.Option(None, help="Display name in results and tables."),
    pooling: Optional[str] = typer.Option(None, help="Pooling for HF encoders: cls, mean, last."),
    query_prompt: Optional[str] = typer.Option(None, help="Prefix or {text}/{instruction} template for queries."),
    document_prompt: Optional[str] = typer.Option(None, help="Prefix or template for documents."),
    max_length: Optional[int] = typer.Option(None, help="Truncate inputs to this many tokens."),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:1, mps (default: best available)."),
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
) -> None:
    """Encode a task's queries and corpus, search, and score."""
    from vembed_bench.data.data_root import set_data_root

    set_data_root(data_root)
    from vembed_bench.api import evaluate
    from vembed_bench.report.console import print_result

    encoder_options = {
        key: value for key, value in dict(
            model_type=model_type, pooling=pooling, query_prompt=query_prompt,
            document_prompt=document_prompt, max_length=max_length, device=device, dtype=dtype,
            attention=attention, instruction=instruction, padding_side=padding_side,
            skip_bad_images=skip_bad_images or None, num_workers=image_workers,
        ).items() if value is not None
    }
    if dims:
        from vembed_bench.matryoshka import dims_table, evaluate_dims

        results = evaluate_dims(
            task, model, dims, split=split, limit=limit, seed=seed, k_values=_parse_ks(k),
            main_metric=main_metric, backend=backend, index=index, batch_size=batch_size,
            cache=_cache_policy(cache), cache_dir=cache_dir, results_dir=results_dir,
            model_name=model_name, show_progress=progress, trust_remote_code=trust_remote_code,
            **encoder_options,
        )
        typer.echo(dims_table(results))
        return
    from vembed_bench.data.cards import resolve_card

    if resolve_card(task).loader == "suite":  # e.g. flickr30k: both directions + Rsum
        from vembed_bench.suites import evaluate_suite, print_suite

        suite = evaluate_suite(
            task, model, split=split, limit=limit, seed=seed, backend=backend, index=index,
            batch_size=batch_size, cache=_cache_policy(cache), cache_dir=cache_dir,
            results_dir=results_dir, model_name=model_name, show_progress=progress,
            trust_remote_code=trust_remote_code, grid=grid, maxsim=maxsim, candidate_depth=candidate_depth,
            **encoder_options,
        )
        print_suite(suite, results_dir)
        return
    result = evaluate(
        task, model, split=split, limit=limit, seed=seed, k_values=_parse_ks(k),
        main_metric=main_metric, backend=backend, index=index, batch_size=batch_size,
        cache=_cache_policy(cache), cache_dir=cache_dir, results_dir=results_dir,
        model_name=model_name, show_progress=progress, trust_remote_code=trust_remote_code,
        **({"grid": grid} if grid else {}), maxsim=maxsim, candidate_depth=candidate_depth, **encoder_options,
    )
    print_result(result, str(result.default_path(results_dir)))


@app.command("demo")
def demo_command(
    results_dir: Path = typer.Option(Path("results"), help="Where result files are written."),
    cache: str = typer.Option("use", help="Embedding cache policy: use, refresh, off."),
) -> None:
    """Evaluate the shipped all-MiniLM-L6-v2 on the shipped CPython FAQ task, offline."""
    from vembed_bench.api import evaluate
    from vembed_bench.demo import DEMO_MODEL_NAME, DEMO_TASK, demo_model_path
    from vembed_bench.report.console import print_result

    result = evaluate(DEMO_TASK, str(demo_model_path()), model_name=DEMO_MODEL_NAME,
                      results_dir=results_dir, cache=_cache_policy(cache))
    print_result(result, str(result.default_path(results_dir)))


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
def tasks_command() -> None:
    """List the known task cards."""
    from rich.console import Console

    from vembed_bench.data.cards import list_cards
    from vembed_bench.report.console import tasks_table

    Console().print(tasks_table(list_cards()))


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


def _cache_policy(value: str):
    from vembed_bench.cache import CachePolicy

    try:
        return CachePolicy(value)
    except ValueError:
        raise VembedError(f"--cache '{value}' is not a policy; use one of: use, refresh, off") from None


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app(standalone_mode=False)
    except VembedError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print("interrupted; finished cache shards are kept and a re-run resumes from them", file=sys.stderr)
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except Exception as err:  # click usage errors
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise


if __name__ == "__main__":
    main()
