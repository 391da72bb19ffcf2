"""Train, then benchmark: zero-shot eval -> fine-tune -> fine-tuned eval -> comparison.

The run folder (``<output_dir>/<name>``) holds everything needed to trust and
repeat the numbers::

    config.yaml          the fully resolved recipe (defaults < YAML < --set)
    train_log.jsonl      one row per logged step: step, epoch, loss, lr, samples_per_s, processes
    tensorboard/         TensorBoard events (the default logger)
    loss.png             the loss curve
    checkpoints/step-N/  trainable weights, optimizer, scheduler, RNG (for --resume)
    model/               the fine-tuned model folder (LoRA merged) with its own README.md card
    eval/zero_shot/...   result files of the base model (the usual eval pipeline and cache),
                         each with its rankings beside it as a TREC run file (.trec)
    eval/fine_tuned/...  result files (and .trec rankings) of the fine-tuned model
    per_query/           thumbnail grids of the biggest per-query movers (image tasks)
    comparison.md/.json  per task and metric: zero-shot, fine-tuned, delta with its paired
                         95% interval; per task the queries that improved / worsened / stayed
                         and the biggest movers with their top documents before and after;
                         per guard task (``eval.guard_tasks``) the forgetting verdict

``comparison.json`` follows the convention of ``report/collect.py`` (``pairs`` of
result paths, so leaderboards pick the run up; each pair's ``role`` is ``eval`` or
``guard``) and adds the table's ``rows``, ``per_query`` (counts and movers per task)
and ``guards`` (one verdict per guard task).
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
    """Per task, dimension and metric: zero_shot, fine_tuned, delta_pp, its 95% interval (x100)."""
    fit: Any = None
    training_examples: int | None = None
    summary: str = ""
    """The comparison without the movers' tables (what ``vembed-bench train`` prints)."""
    changes: list[Any] = field(default_factory=list)
    """Per full-size pair: :class:`~vembed_bench.report.regression.QueryChanges`."""
    guards: list[Any] = field(default_factory=list)
    """Per guard task: :class:`~vembed_bench.report.regression.GuardVerdict`."""
    main_deltas: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    """(task, split, role) -> the main metric's :class:`~vembed_bench.report.stats.PairedDelta`."""


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
    run = TrainRun(recipe=recipe, folder=folder, training_examples=len(examples))
    tasks = _all_tasks(recipe)
    if main and evaluate_base and tasks:
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
    run.model_path = save_model(model, folder / "model", prompts=prompts or None,
                                card=_card(run, evaluated=not tasks))
    _plot_loss(run.fit.log_rows, folder / "loss.png", recipe.name)
    if tasks:
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
        from vembed_bench.train.model_card import write_model_card

        write_model_card(run.model_path, _card(run, evaluated=True))
    return run


def _all_tasks(recipe: Recipe) -> list[str]:
    """The eval tasks, then the guard tasks: one evaluation (one model load) scores them all."""
    return [*recipe.eval.tasks, *recipe.eval.guard_tasks]


def _card(run: TrainRun, *, evaluated: bool) -> str:
    """The fine-tuned model's card from what the run knows so far (:mod:`.model_card`)."""
    from vembed_bench.train.model_card import CardFacts, ScoredTask, model_card

    verdicts = {(v.task, v.split): v.line() for v in run.guards}
    scored = [ScoredTask(task, split, role, delta, verdicts.get((task, split), ""))
              for (task, split, role), delta in run.main_deltas.items()]
    facts = CardFacts(
        base_name=_base_name(run.recipe),
        base_source=_base_source(run.recipe),
        base_fingerprint=_base_fingerprint(run),
        training_examples=run.training_examples,
        steps=getattr(run.fit, "steps", None),
        scored=scored,
        evaluated=evaluated,
    )
    return model_card(run.recipe, facts)


def _base_fingerprint(run: TrainRun) -> str | None:
    """The base weights' fingerprint: from its zero-shot results, else the folder's digest."""
    for result in run.zero_shot:
        fingerprint = getattr(result, "weights_fingerprint", None)
        if fingerprint and fingerprint != "nofp":
            return fingerprint
    source = Path(_base_source(run.recipe))
    if source.is_dir():
        from vembed_bench.encoders.fingerprint import folder_digest

        return folder_digest(source)
    return None


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
    """Each eval and guard task at full size and at each smaller Matryoshka dimension, through the runner.

    The model is loaded once for all tasks, and the Matryoshka views reuse the
    full-size embeddings instead of encoding again. Each result gets a ``path``
    attribute: where its file was written; its rankings are beside it as a TREC
    run file (``.trec``), which the per-query report reads. A failed task stops
    the run (the comparison would be incomplete).
    """
    from vembed_bench.evaluation import ModelSpec, run
    from vembed_bench.options import EncoderOptions, EvalOptions

    cfg = recipe.eval
    eval_options = EvalOptions(split=cfg.split, limit=cfg.limit, batch_size=cfg.batch_size,
                               cache_dir=cfg.cache_dir, results_dir=results_dir, show_progress=progress,
                               dims=tuple(_eval_dims(recipe)) or None, overwrite="always",
                               save_predictions=True)
    encoder_options = EncoderOptions.build(options, show_progress=progress)
    outcomes = run([ModelSpec(source, name)], _all_tasks(recipe), eval_options, encoder_options)
    if outcomes.failed:
        raise outcomes.failed[0].exception
    results = []
    for outcome in outcomes:
        outcome.result.path = outcome.path
        results.append(outcome.result)
    return results


# -- comparison ----------------------------------------------------------------------------


def write_comparison(run: TrainRun) -> tuple[str, list[dict[str, Any]]]:
    """Write ``comparison.md`` and ``comparison.json``; return the Markdown and the rows.

    Per evaluated pair: the delta table (every metric, paired intervals). Per full-size
    pair: the per-query changes (:func:`~vembed_bench.report.regression.query_changes`,
    with a thumbnail grid for image tasks) and, for a guard task, the forgetting verdict.
    Also sets ``run.summary`` (the same without the movers' tables), ``run.changes``,
    ``run.guards`` and ``run.main_deltas``.
    """
    from vembed_bench.report.comparison import comparison_blocks, matryoshka_table
    from vembed_bench.report.document import Heading, Para, to_markdown
    from vembed_bench.report.files import write_text
    from vembed_bench.report.regression import changes_blocks, guard_verdict, verdict_blocks
    from vembed_bench.report.stats import paired_deltas
    from vembed_bench.results import Result

    folder = run.folder
    cards = _task_cards(_all_tasks(run.recipe))
    guard_names = set(_task_cards(run.recipe.eval.guard_tasks))
    base_by_key = {_key(r): r for r in run.zero_shot if isinstance(r, Result)}
    pairs: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    sections: dict[str, list[tuple[list[Any], list[Any]]]] = {"eval": [], "guard": []}
    for tuned in (r for r in run.fine_tuned if isinstance(r, Result)):
        base = base_by_key.get(_key(tuned))
        if base is None:
            continue
        role = "guard" if base.task in guard_names else "eval"
        dim = tuned.model_info.get("matryoshka_dim")
        pairs.append({"base": os.path.relpath(base.path, folder),
                      "tuned": os.path.relpath(tuned.path, folder), "role": role})
        deltas = paired_deltas(base, tuned)
        rows += _rows(base, tuned, deltas, role, dim)
        if dim is not None:
            continue
        run.main_deltas[(base.task, base.split, role)] = deltas[0]
        if role == "guard":
            run.guards.append(guard_verdict(base, tuned))
        changes = _query_changes(base, tuned, cards, folder)
        run.changes.append(changes)
        title = f"{base.task} ({base.split})" + (" · guard task" if role == "guard" else "")
        table = [Heading(2, title), *comparison_blocks(base, tuned)]
        sections[role].append((table + changes_blocks(changes, movers=False),
                               table + changes_blocks(changes)))
    title = [Heading(1, f"{run.recipe.name}: zero-shot vs fine-tuned")]
    verdicts = verdict_blocks(run.guards)
    ordered = sections["eval"] + sections["guard"]
    matryoshka = matryoshka_table(rows) if any(r["matryoshka"] for r in rows) else ""
    text = to_markdown(title + verdicts + [b for _, long in ordered for b in long], folder)
    if matryoshka:
        text += "\n" + matryoshka
    summary = to_markdown(title + verdicts + [b for short, _ in ordered for b in short]
                          + [Para((f"Per-query wins and losses: {folder / 'comparison.md'}",))], folder)
    run.summary = summary + ("\n" + matryoshka if matryoshka else "")
    write_text(folder / "comparison.md", text)
    record = {
        "schema_version": 1,
        "name": run.recipe.name,
        "pairs": pairs,
        "rows": rows,
        "per_query": [_relative(c.to_dict(), folder) for c in run.changes],
        "guards": [v.to_dict() for v in run.guards],
    }
    write_text(folder / "comparison.json", json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return text, rows


def _rows(base: Any, tuned: Any, deltas: list[Any], role: str, dim: int | None) -> list[dict[str, Any]]:
    """``comparison.json`` rows of one pair: per metric both scores, the delta and its interval."""
    by_metric = {d.metric: d for d in deltas}
    rows = []
    for metric in [base.main_metric] + sorted(m for m in base.scores if m != base.main_metric):
        if metric not in tuned.scores:
            continue
        zs, ft = 100 * base.scores[metric], 100 * tuned.scores[metric]
        row = {
            "task": base.task,
            "split": base.split,
            "role": role,
            "dim": dim or base.embedding_dim,
            "matryoshka": dim is not None,
            "metric": metric,
            "zero_shot": round(zs, 2),
            "fine_tuned": round(ft, 2),
            "delta_pp": round(ft - zs, 2),
        }
        delta = by_metric.get(metric)
        if delta is not None:
            row.update(ci_low_pp=round(100 * delta.ci_low, 2), ci_high_pp=round(100 * delta.ci_high, 2),
                       p_value=delta.p_value)
        rows.append(row)
    return rows


def _query_changes(base: Any, tuned: Any, cards: Mapping[str, Any], folder: Path) -> Any:
    """Per-query changes of one pair, with top documents from the TREC run files and, when the
    task data still matches the results, texts, relevance and (image tasks) a thumbnail grid."""
    from dataclasses import replace

    from vembed_bench.report.regression import has_images, query_changes, save_movers_grid
    from vembed_bench.results import slug

    runs = [Path(r.path).with_suffix(".trec") for r in (base, tuned)]
    base_run, tuned_run = (run if run.is_file() else None for run in runs)
    data = _verified_data(tuned, cards)
    changes = query_changes(base, tuned, base_run=base_run, tuned_run=tuned_run, data=data)
    if data is not None and has_images(data):
        grid = save_movers_grid(changes, data, folder / "per_query" / f"{slug(base.task)}-{slug(base.split)}.png")
        if grid is not None:
            changes = replace(changes, grid=str(grid))
    return changes


def _task_cards(tasks: Sequence[str]) -> dict[str, Any]:
    """Task name -> card, for the given tasks and the members of suites among them."""
    from vembed_bench.data import resolve_card
    from vembed_bench.data.suites import is_suite, suite_members

    cards = {}
    for task in tasks:
        card = resolve_card(task)
        for item in [card, *([resolve_card(m) for m in suite_members(card)] if is_suite(card) else [])]:
            cards[item.name] = item
    return cards


def _verified_data(result: Any, cards: Mapping[str, Any]) -> Any:
    """The task split ``result`` was scored on, loaded again; None (with a warning) when it
    cannot be loaded or is no longer the data the result's fingerprint names."""
    from vembed_bench.data import data_fingerprint, load_task
    from vembed_bench.errors import VembedError

    card = cards.get(result.task)
    if card is None:
        return None
    try:
        data = load_task(card, result.split, limit=result.limit, seed=result.seed)
    except VembedError as err:
        log.warning("per-query report of %s without texts: %s", result.task, err)
        return None
    if data_fingerprint(data) != result.task_info.get("data_fingerprint"):
        log.warning("per-query report of %s without texts: its data changed since it was scored",
                    result.task)
        return None
    return data


def _relative(record: dict[str, Any], folder: Path) -> dict[str, Any]:
    """``record`` with its file paths (run files, grid) relative to the run folder."""
    for key in ("base_run", "tuned_run", "grid"):
        if record.get(key):
            record[key] = os.path.relpath(record[key], folder)
    return record


def _key(result: Any) -> tuple:
    return (result.task, result.split, result.model_info.get("matryoshka_dim"))


def _plot_loss(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    from vembed_bench.report.plots import loss_curve, matplotlib_available

    if not matplotlib_available():
        log.warning("matplotlib is not installed; no loss.png")
        return
    loss_curve(f"{title}: training loss", rows, path)
