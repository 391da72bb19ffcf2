"""Fine-tuning, then benchmarking: ``vembed_bench.train(recipe, **overrides)``.

``vembed_bench.train`` is this package *and* the function: the module is made
callable, so ``import vembed_bench; vembed_bench.train("trainers/x.yaml")``
works whether or not a submodule was imported first (importing a submodule
would otherwise replace a function of the same name on the parent package).
Only light modules are imported here; torch loads when training starts.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["train"]


def train(
    recipe: str | Path | Mapping[str, Any] | Any,
    *,
    set: Sequence[str] | Mapping[str, Any] | None = None,
    dry_run: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    **overrides: Any,
) -> Any:
    """Resolve ``recipe`` (a YAML path, a dict or a ``Recipe``), fine-tune, evaluate and compare.

    Overrides are dotted keys (``set={"training.lr": 1e-4}`` or ``["training.lr=1e-4"]``)
    or keyword arguments with ``__`` for the dot (``training__lr=1e-4``). Returns a
    :class:`~vembed_bench.train.flow.TrainRun` whose ``comparison`` is the Markdown
    table and ``rows`` its numbers; with ``dry_run`` only the resolved recipe is
    validated (nothing is loaded or written) and the run has no results.
    """
    from vembed_bench.train.flow import TrainRun, resolve_recipe, run_training
    from vembed_bench.train.recipe import parse_set

    layered: dict[str, Any] = {}
    if set:
        layered.update(parse_set(set) if not isinstance(set, Mapping) else dict(set))
    layered.update({key.replace("__", "."): value for key, value in overrides.items()})
    resolved = resolve_recipe(recipe, layered)
    if dry_run:
        from vembed_bench.train.paths import check_paths

        check_paths(resolved)  # a path leaving its root is a bad recipe, not a missing file
        return TrainRun(recipe=resolved, folder=resolved.run_dir)
    return run_training(resolved, resume=resume, overwrite=overwrite, progress=progress)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
