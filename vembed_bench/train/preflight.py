"""Everything a training run can check before it creates its run folder or loads a model.

A run refused after an hour of zero-shot evaluation, or one that leaves a
half-made run folder behind, wastes the user's time twice. So the flow first
checks, cheapest first: the paths (roots they may not leave), the run folder
(exists? writable?), the model (found, trainable), the eval and guard tasks (known), the
image root (a folder), every training row (read and shaped), and that the model
type embeds the data's inputs (images, texts).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["check_input_kinds", "check_inputs", "preflight"]


def preflight(recipe: Any, *, resume: bool = False, overwrite: bool = False,
              main: bool = True) -> list[Any]:
    """Refuse a run that cannot succeed, before anything is written; return its training examples.

    ``main``: this process writes the run folder (under ``accelerate launch`` only rank 0 does).
    """
    from vembed_bench.train.data import read_examples
    from vembed_bench.train.paths import check_paths, resolve_image_root
    from vembed_bench.train.run_folder import check_run_folder

    check_paths(recipe)
    if main:
        check_run_folder(recipe, resume=resume, overwrite=overwrite)
    kind = _check_model(recipe)
    _check_eval_tasks(recipe)
    root = resolve_image_root(recipe)
    if root is not None and not root.is_dir():
        raise VembedError(
            f"{recipe.source}: 'data.image_root' {recipe.data.image_root}: {root} is not a "
            "folder; point it at the folder the data's image paths are relative to"
        )
    examples = read_examples(recipe)
    from vembed_bench.train.model import trainable_inputs

    check_input_kinds(trainable_inputs(kind), examples, recipe, kind)
    return examples


def _check_model(recipe: Any) -> str:
    """The model (or composed towers) exists and its type can be trained; returns the type."""
    from vembed_bench.train.model import model_kind, resolve_model_path

    if recipe.model.type == "composed":
        from vembed_bench.train.backends.composed_backend import base_folder, tower_sources

        if recipe.model.path:
            base_folder(recipe)  # with model.path: only checks it is a composed folder
        else:
            tower_sources(recipe)
        return "composed"
    resolve_model_path(recipe)
    return model_kind(recipe)


def _check_eval_tasks(recipe: Any) -> None:
    """Every eval and guard task resolves to a card, and no task is both (by its card name)."""
    from vembed_bench.data import resolve_card

    eval_names: dict[str, int] = {}
    for key in ("tasks", "guard_tasks"):
        for index, task in enumerate(getattr(recipe.eval, key)):
            try:
                name = resolve_card(task).name
            except VembedError as err:
                raise VembedError(f"{recipe.source}: 'eval.{key}[{index}]' {err}") from None
            if key == "tasks":
                eval_names[name] = index
            elif name in eval_names:
                raise VembedError(
                    f"{recipe.source}: 'eval.guard_tasks[{index}]' {task!r} is the task "
                    f"eval.tasks[{eval_names[name]}] names ({name}); a guard task is one the run "
                    "does not train for (keep it in one of the two lists)"
                )


def check_input_kinds(accepts: Collection[str], examples: Sequence[Any], recipe: Any,
                      kind: str) -> None:
    """Refuse data with inputs (images, texts) that a ``kind`` model, embedding ``accepts``, cannot."""
    from vembed_bench.train.data import has_images, has_texts

    for needed, found in (("image", has_images(examples)), ("text", has_texts(examples))):
        if found and needed not in accepts:
            raise VembedError(
                f"{recipe.source}: 'data.train' {recipe.data.train} has {needed} inputs, but a {kind} "
                f"model embeds only {' and '.join(sorted(accepts))}; choose a model.type that "
                f"takes {needed}s (e.g. composed for text and images)"
            )


def check_inputs(model: Any, examples: Sequence[Any], recipe: Any) -> None:
    """:func:`check_input_kinds` for a built model (its own ``accepts``)."""
    from vembed_bench.train.model import accepted_inputs, model_kind

    check_input_kinds(accepted_inputs(model), examples, recipe, model_kind(recipe))
