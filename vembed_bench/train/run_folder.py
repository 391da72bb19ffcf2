"""The run folder ``<output_dir>/<name>``: checked, created, and removed again if nothing came of it.

A refused run must leave nothing behind: a stray ``config.yaml`` would make the
next run of the same name stop with "already exists". So every check here runs
before the folder is made (:func:`check_run_folder`), and a run that fails after
making it (:func:`removed_unless_computed`) removes the folder again, unless it
already holds something computed (a checkpoint, the model, an eval result):
that is kept, and the message says how to continue.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

log = logging.getLogger(__name__)

__all__ = [
    "RunFolder",
    "check_run_folder",
    "computed_work",
    "create_run_folder",
    "removed_unless_computed",
    "write_config",
]

CONFIG = "config.yaml"


@dataclass
class RunFolder:
    """A run folder this invocation created (or emptied), and the parents it had to make."""

    path: Path
    existed: bool = False
    """The folder was there (empty) before: removing it means emptying it again."""
    made_parents: list[Path] = field(default_factory=list)
    """Parents that ``mkdir`` created, deepest first (removed again while empty)."""

    def remove(self) -> None:
        if self.existed:
            for child in self.path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            return
        shutil.rmtree(self.path, ignore_errors=True)
        for parent in self.made_parents:
            try:
                parent.rmdir()
            except OSError:  # another run wrote there meanwhile: keep it
                break


def check_run_folder(recipe: Any, *, resume: bool, overwrite: bool) -> None:
    """Refuse what would stop the run at its folder, before anything is created."""
    from vembed_bench.train.loop import CHECKPOINTS, latest_checkpoint

    folder = recipe.run_dir
    if resume and overwrite:
        raise VembedError("--resume and --overwrite contradict each other; pass one")
    if folder.exists() and not folder.is_dir():
        raise VembedError(
            f"run folder {folder} is a file, not a folder; move it, or pick another "
            "--set name=<new name> or --set output_dir=DIR"
        )
    filled = folder.is_dir() and any(folder.iterdir())
    if filled and not resume and not overwrite:
        raise VembedError(
            f"run folder {folder} already exists; pass --overwrite to replace it, "
            "--resume to continue it, or --set name=<new name>"
        )
    if resume and not filled:
        raise VembedError(f"--resume: run folder {folder} does not exist")
    if resume and latest_checkpoint(folder) is None:
        raise VembedError(f"--resume: no checkpoint in {folder / CHECKPOINTS}")
    _check_writable(recipe, folder)


def _check_writable(recipe: Any, folder: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    source = getattr(recipe, "source", "recipe")
    if not existing.is_dir():
        raise VembedError(
            f"{source}: 'output_dir' {recipe.output_dir}: {existing} is a file, not a folder; "
            "choose another output_dir (--set output_dir=DIR)"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VembedError(
            f"{source}: 'output_dir' {recipe.output_dir}: cannot write in {existing} "
            "(permission denied); choose another output_dir (--set output_dir=DIR)"
        )


def create_run_folder(recipe: Any, *, resume: bool, overwrite: bool) -> RunFolder | None:
    """Make the run folder; ``None`` when resuming (the folder is not this invocation's)."""
    folder = recipe.run_dir
    if resume:
        return None
    if overwrite and folder.is_dir() and any(folder.iterdir()):
        shutil.rmtree(folder)
    existed = folder.is_dir()
    made = []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        made.append(parent)
        parent = parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    return RunFolder(folder, existed=existed, made_parents=made)


def write_config(recipe: Any, folder: Path, *, resume: bool) -> None:
    """Save the fully resolved recipe as ``config.yaml`` (atomically)."""
    import yaml

    from vembed_bench.report.files import write_text
    from vembed_bench.train.recipe import recipe_to_dict

    text = yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True)
    path = folder / CONFIG
    if resume and path.is_file() and path.read_text(encoding="utf-8") != text:
        log.warning(
            "resuming %s with a recipe that differs from its config.yaml; the new one is saved",
            folder,
        )
    write_text(path, text)


def computed_work(folder: Path) -> str | None:
    """What in ``folder`` took compute to make and how to go on from it; ``None`` if nothing."""
    from vembed_bench.train.loop import latest_checkpoint

    checkpoint = latest_checkpoint(folder)
    if checkpoint is not None:
        return (
            f"the run folder {folder} keeps checkpoint {checkpoint.name}; pass --resume to "
            "continue from it"
        )
    results = sorted((folder / "eval").rglob("*.json")) if (folder / "eval").is_dir() else []
    if (folder / "model").exists() or results:
        return (
            f"the run folder {folder} keeps the results computed so far ({folder / 'eval'}); "
            "with no checkpoint yet --resume cannot continue it: pass --overwrite to start again"
        )
    return None


@contextmanager
def removed_unless_computed(run: RunFolder | None) -> Iterator[None]:
    """On any failure, remove ``run``'s folder if it holds nothing computed; else keep it and say so."""
    try:
        yield
    except BaseException as err:
        if run is None:
            raise
        kept = computed_work(run.path)
        if kept is None:
            run.remove()
            raise
        if isinstance(err, VembedError):
            raise VembedError(f"{err}; {kept}") from None
        log.error("%s", kept)
        raise
