"""The bodies of ``vembed-bench train`` and ``vembed-bench merge`` (``cli.py`` keeps the signatures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["merge_command", "missing_inputs", "train_command"]


def train_command(
    recipe: Path,
    overrides: Sequence[str],
    *,
    dry_run: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Validate (and with ``dry_run`` stop), else run the flow and print the comparison."""
    import yaml

    from vembed_bench.train import train
    from vembed_bench.train.recipe import recipe_to_dict

    run = train(
        recipe,
        set=list(overrides),
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    if dry_run:
        print(
            yaml.safe_dump(recipe_to_dict(run.recipe), sort_keys=False, allow_unicode=True), end=""
        )
        missing = missing_inputs(run.recipe)
        for line in missing:
            print(f"# missing: {line}")
        state = f"{len(missing)} input(s) missing, see above" if missing else "inputs found"
        print(f"# recipe OK ({state}); the run would write to {run.folder}")
        return
    if run.summary or run.comparison:
        # The tables and per-query counts; the movers' tables stay in comparison.md.
        print(run.summary or run.comparison, end="")
    print(f"run folder: {run.folder}")
    print(f"fine-tuned model: {run.model_path}")


def missing_inputs(recipe: Any) -> list[str]:
    """What a run of ``recipe`` needs but cannot find here: model, data, images, eval tasks.

    A hub id counts as found (it is fetched at run time). ``--dry-run`` lists these
    without failing: the recipe is valid, the machine just lacks the files.
    """
    from vembed_bench.data import resolve_card
    from vembed_bench.train.model import resolve_model_path

    missing = []
    try:
        resolve_model_path(recipe)
    except VembedError as err:
        missing.append(str(err))
    source = recipe.data.train
    if not source.startswith("hf:"):
        try:
            path = recipe.resolve_path(source, "data.train")
        except VembedError as err:  # @data_root/ without a data root
            missing.append(str(err))
        else:
            try:
                if not path.exists():
                    resolve_card(source)  # a task card name is fine
            except VembedError:
                missing.append(f"data.train {source} (looked at {path})")
    if recipe.data.image_root:
        from vembed_bench.train.paths import resolve_image_root

        try:
            root = resolve_image_root(recipe)
            if root is not None and not root.is_dir():
                missing.append(f"data.image_root {recipe.data.image_root} (looked at {root})")
        except VembedError as err:
            missing.append(str(err))
    for kind, tasks in (("eval task", recipe.eval.tasks), ("guard task", recipe.eval.guard_tasks)):
        for task in tasks:
            try:
                resolve_card(task)
            except VembedError as err:
                missing.append(f"{kind} {task}: {err}")
    return missing


def merge_command(adapter: Path, base: Path, out: Path) -> Path:
    """Load ``base``, apply the LoRA ``adapter``, merge it and save a plain model folder at ``out``."""
    from vembed_bench.train.model import merge_adapter

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise VembedError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if Path(out).exists() and any(Path(out).iterdir()):
        raise VembedError(f"{out} already exists and is not empty; choose another --out")
    merged = merge_adapter(Path(adapter), Path(base), Path(out))
    print(f"merged model: {merged}")
    return merged
