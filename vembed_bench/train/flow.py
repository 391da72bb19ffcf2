"""Train, then benchmark: zero-shot eval -> fine-tune -> fine-tuned eval -> comparison.

The run folder (``<output_dir>/<name>``) holds everything needed to trust and
repeat the numbers::

    config.yaml          the fully resolved recipe (defaults < YAML < --set)
    train_log.jsonl      one row per logged step: step, epoch, loss, lr, samples_per_s, processes
    tensorboard/         TensorBoard events (the default logger)
    loss.png             the loss curve
    checkpoints/step-N/  trainable weights, optimizer, scheduler, RNG (for --resume)
    model/               the fine-tuned sentence-transformers folder (LoRA merged)
    eval/zero_shot/...   result files of the base model (the usual eval pipeline and cache)
    eval/fine_tuned/...  result files of the fine-tuned model
    comparison.md/.json  per task and metric: zero-shot, fine-tuned, delta (points)

``comparison.json`` follows the convention of ``report/collect.py`` (``pairs`` of
result paths, so leaderboards pick the run up) and adds the table's ``rows``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vembed_bench.train.recipe import Recipe, load_recipe, recipe_from_dict, recipe_to_dict

log = logging.getLogger(__name__)

__all__ = ["TrainRun", "resolve_recipe", "run_training"]


@dataclass
class TrainRun:
    """What a training run produced."""

    recipe: Recipe
    folder: Path
    model_path: Path | None = None
    zero_shot: list[Any] = field(default_factory=list)
    fine_tuned: list[Any] = field(default_factory=list)
    comparison: str = ""
    """The comparison tables as Markdown (also in ``comparison.md``)."""
    rows: list[dict[str, Any]] = field(default_factory=list)
    """Per task, dimension and metric: zero_shot, fine_tuned, delta_pp (scores x100)."""
    fit: Any = None


def resolve_recipe(
    recipe: str | Path | Mapping[str, Any] | Recipe,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> Recipe:
    """A :class:`Recipe` from a YAML path, a dict or a recipe, with overrides applied and validated."""
    from vembed_bench.train.recipe import apply_overrides

    if isinstance(recipe, Recipe):
        data = apply_overrides(recipe_to_dict(recipe), overrides)
        return recipe_from_dict(data, source=recipe.source, base_dir=recipe.base_dir)
    if isinstance(recipe, Mapping):
        return recipe_from_dict(apply_overrides(recipe, overrides), source="recipe")
    return load_recipe(recipe, overrides)


def run_training(
    recipe: Recipe,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    evaluate_base: bool = True,
) -> TrainRun:
    """The whole flow for a validated recipe; returns the run with its comparison.

    Everything checkable is checked before the run folder is made; a run that fails
    before computing anything removes the folder it made (:mod:`.run_folder`).
    """
    from vembed_bench.train.preflight import preflight
    from vembed_bench.train.run_folder import (
        create_run_folder,
        removed_unless_computed,
        write_config,
    )

    # Under `accelerate launch` every process trains; only the main one evaluates and writes.
    main = os.environ.get("RANK", "0") == "0"
    examples = preflight(recipe, resume=resume, overwrite=overwrite, main=main)
    created = create_run_folder(recipe, resume=resume, overwrite=overwrite) if main else None
    with removed_unless_computed(created):
        if main:
            write_config(recipe, recipe.run_dir, resume=resume)
        return _train_and_compare(
            recipe, examples, main=main, resume=resume, progress=progress,
            evaluate_base=evaluate_base,
        )


def _train_and_compare(
    recipe: Recipe,
    examples: list[Any],
    *,
    main: bool,
    resume: bool,
    progress: bool,
    evaluate_base: bool,
) -> TrainRun:
    """Zero-shot eval, fine-tuning, the saved model, fine-tuned eval and the comparison."""
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model, eval_options, save_model
    from vembed_bench.train.preflight import check_inputs

    folder = recipe.run_dir
    run = TrainRun(recipe=recipe, folder=folder)
    if main and evaluate_base and recipe.eval.tasks:
        run.zero_shot = _evaluate_all(
            recipe,
            _base_source(recipe),
            folder / "eval" / "zero_shot",
            _base_name(recipe),
            eval_options(recipe, tuned=False),
            progress,
        )
    import torch

    model = build_model(recipe, device="cuda" if torch.cuda.is_available() else "cpu")
    check_inputs(model, examples, recipe)
    run.fit = fit(recipe, model, examples, folder, resume=resume, progress=progress)
    if not main:
        return run
    prompts = {
        k: v
        for k, v in {
            "query": recipe.data.query_prompt,
            "document": recipe.data.document_prompt,
        }.items()
        if v
    }
    run.model_path = save_model(model, folder / "model", prompts=prompts or None)
    _plot_loss(run.fit.log_rows, folder / "loss.png", recipe.name)
    if recipe.eval.tasks:
        run.fine_tuned = _evaluate_all(
            recipe,
            str(run.model_path),
            folder / "eval" / "fine_tuned",
            recipe.name,
            eval_options(recipe, tuned=True),
            progress,
        )
        if run.zero_shot:
            run.comparison, run.rows = write_comparison(run)
    return run


# -- evaluation ----------------------------------------------------------------------------


def _base_source(recipe: Recipe) -> str:
    from vembed_bench.train.model import resolve_model_path

    if recipe.model.type == "composed":  # may build its base from two towers in the run folder
        from vembed_bench.train.backends.composed_backend import base_folder

        return str(base_folder(recipe))
    return resolve_model_path(recipe)


def _base_name(recipe: Recipe) -> str:
    if recipe.model.name:
        return recipe.model.name
    value = recipe.model.path
    if value.startswith("pip:"):
        return value[4:].split("/")[0]
    return Path(value.rstrip("/")).name or value or f"{recipe.model.type}-base"


def _eval_dims(recipe: Recipe) -> list[int]:
    return sorted(set(recipe.eval.matryoshka_dims or recipe.loss.matryoshka_dims), reverse=True)


def _evaluate_all(
    recipe: Recipe,
    source: str,
    results_dir: Path,
    name: str,
    options: dict[str, Any],
    progress: bool,
) -> list[Any]:
    """Each eval task at full size and at each smaller Matryoshka dimension, through the runner.

    The model is loaded once for all tasks, and the Matryoshka views reuse the
    full-size embeddings instead of encoding again. Each result gets a ``path``
    attribute: where its file was written. A failed task stops the run (the
    comparison would be incomplete).
    """
    from vembed_bench.evaluation import ModelSpec, run
    from vembed_bench.options import EncoderOptions, EvalOptions

    cfg = recipe.eval
    eval_options = EvalOptions(split=cfg.split, limit=cfg.limit, batch_size=cfg.batch_size,
                               cache_dir=cfg.cache_dir, results_dir=results_dir, show_progress=progress,
                               dims=tuple(_eval_dims(recipe)) or None, overwrite="always")
    encoder_options = EncoderOptions.build(options, show_progress=progress)
    outcomes = run([ModelSpec(source, name)], list(cfg.tasks), eval_options, encoder_options)
    if outcomes.failed:
        raise outcomes.failed[0].exception
    results = []
    for outcome in outcomes:
        outcome.result.path = outcome.path
        results.append(outcome.result)
    return results


# -- comparison ----------------------------------------------------------------------------


def write_comparison(run: TrainRun) -> tuple[str, list[dict[str, Any]]]:
    """Write ``comparison.md`` and ``comparison.json``; return the Markdown and the rows."""
    from vembed_bench.report.comparison import comparison_table
    from vembed_bench.report.files import write_text

    folder = run.folder
    pairs, rows, sections = [], [], [f"# {run.recipe.name}: zero-shot vs fine-tuned\n"]
    base_by_key = {_key(r): r for r in run.zero_shot}
    for tuned in run.fine_tuned:
        base = base_by_key.get(_key(tuned))
        if base is None:
            continue
        dim = tuned.model_info.get("matryoshka_dim")
        pairs.append(
            {
                "base": os.path.relpath(base.path, folder),
                "tuned": os.path.relpath(tuned.path, folder),
            }
        )
        for metric in [base.main_metric] + sorted(m for m in base.scores if m != base.main_metric):
            if metric in tuned.scores:
                zs, ft = 100 * base.scores[metric], 100 * tuned.scores[metric]
                rows.append(
                    {
                        "task": base.task,
                        "split": base.split,
                        "dim": dim or base.embedding_dim,
                        "matryoshka": dim is not None,
                        "metric": metric,
                        "zero_shot": round(zs, 2),
                        "fine_tuned": round(ft, 2),
                        "delta_pp": round(ft - zs, 2),
                    }
                )
        if dim is None:
            sections.append(f"## {base.task} ({base.split})\n\n{comparison_table(base, tuned)}")
    if any(r["matryoshka"] for r in rows):
        from vembed_bench.report.comparison import matryoshka_table

        sections.append(matryoshka_table(rows))
    text = "\n".join(sections)
    write_text(folder / "comparison.md", text)
    record = {"schema_version": 1, "name": run.recipe.name, "pairs": pairs, "rows": rows}
    write_text(folder / "comparison.json", json.dumps(record, indent=2) + "\n")
    return text, rows


def _key(result: Any) -> tuple:
    return (result.task, result.split, result.model_info.get("matryoshka_dim"))


def _plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    from vembed_bench.report.plots import loss_curve, matplotlib_available

    if not matplotlib_available():
        log.warning("matplotlib is not installed; no loss.png")
        return
    loss_curve(f"{title}: training loss", rows, path)
