"""Find result files, training-run folders and the images stored beside them.

Reports are built from what is on disk, so this module fixes the on-disk
conventions the report reads (issue 5's training runs write the same ones):

* a **result file** is any ``*.json`` whose content is a :class:`Result`
  record (other JSON files are skipped; names starting with ``.`` are
  temporary files of atomic writes and are skipped too). Under a folder, a
  file that is not valid JSON (truncated by a crash or a full disk), a result
  of a newer schema than this version reads, or a damaged result is skipped
  with a one-line warning naming it, so one bad file does not hide the rest;
  a file named directly is refused with the same message instead;
* a **retrieval grid** of a result ``<dir>/<stem>.json`` is any
  ``<dir>/<stem>.<name>.png`` (for example ``test.grid.png`` beside ``test.json``);
* a **training run** is a folder holding ``comparison.json``::

      {"schema_version": 1,
       "name": "minilm-faq",                        # optional, default: the folder name
       "pairs": [{"base": "eval/zero_shot/faq/test.json",   # zero-shot result
                  "tuned": "eval/fine_tuned/faq/test.json"}]}  # fine-tuned result

  (paths relative to the run folder, or absolute), and optionally
  ``train_log.jsonl``: one JSON object per line with at least ``step`` (int)
  and ``loss`` (float); other keys (``lr``, ``epoch``, ...) are allowed;
* a **Matryoshka run** is a result whose ``model_info["matryoshka_dim"]`` is
  the number of leading embedding dimensions kept (``embedding_dim`` equals
  it); results of one model at several such dimensions, plus its untruncated
  result, form a score-vs-dimension curve.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vembed_bench.errors import VembedError, where
from vembed_bench.results import READABLE_SCHEMAS, SCHEMA_VERSION, TRADEOFFS_KIND, Result

log = logging.getLogger(__name__)

__all__ = [
    "COMPARISON_FILE",
    "TRAIN_LOG_FILE",
    "Collection",
    "ResultFile",
    "TrainingRun",
    "collect",
    "find_result_files",
    "read_comparison",
    "read_result_file",
    "read_train_log",
]

COMPARISON_FILE = "comparison.json"
TRAIN_LOG_FILE = "train_log.jsonl"
_RESULT_KEYS = {"task", "split", "model", "scores", "per_query", "main_metric"}


@dataclass
class ResultFile:
    """A loaded result and where it came from."""

    result: Result
    path: Path
    """Absolute path (not symlink-resolved, so links in reports stay as the user laid them out)."""
    images: list[Path] = field(default_factory=list)
    """Retrieval-grid PNGs stored beside the result file."""


@dataclass
class TrainingRun:
    """A training-run folder: zero-shot -> fine-tuned pairs and the loss log."""

    name: str
    folder: Path
    pairs: list[tuple[ResultFile, ResultFile]]
    log: list[dict[str, Any]]
    log_path: Path | None


@dataclass
class Collection:
    results: list[ResultFile]
    runs: list[TrainingRun]


def _abspath(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _schema_problem(path: Path, version: object) -> str:
    """Why a result's ``schema_version`` cannot be read, and what to do about it."""
    readable = ", ".join(map(str, READABLE_SCHEMAS))
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        from vembed_bench import __version__

        return (
            f"{path}: result schema {version} was written by a newer vembed-bench; this one "
            f"({__version__}) reads schemas {readable}: upgrade vembed-bench to include it"
        )
    return f"{path}: unsupported result schema {version!r} (this vembed-bench reads {readable})"


def read_result_file(path: str | Path, *, strict: bool = True) -> ResultFile | None:
    """Load one result file.

    With ``strict=False`` (files found under a folder) a JSON file that is not a
    result record returns ``None``; a file that is not valid JSON, of a schema this
    version cannot read or damaged raises :class:`VembedError` either way.
    """
    path = _abspath(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise VembedError(
            f"{where(path, err.lineno)}: not valid JSON ({err.msg}, column {err.colno}); a "
            "truncated or damaged file: evaluate again to rewrite it, or remove it"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise VembedError(f"{path}: cannot read result file ({err})") from None
    if isinstance(record, dict) and record.get("kind") == TRADEOFFS_KIND:
        if strict:
            raise VembedError(f"{path}: a deployment trade-off report, not an eval result; its table is the "
                              f"{path.with_suffix('.md').name} beside it (leaderboard folders pass over it)")
        return None
    if not isinstance(record, dict) or not _RESULT_KEYS <= set(record):
        if strict:
            raise VembedError(
                f"{path}: not a vembed-bench result file (missing {sorted(_RESULT_KEYS)})"
            )
        return None
    if record.get("schema_version") not in READABLE_SCHEMAS:
        raise VembedError(_schema_problem(path, record.get("schema_version")))
    try:
        result = Result.from_dict(record)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise VembedError(
            f"{path}: damaged result file ({type(err).__name__}: {err}); evaluate again to rewrite it"
        ) from None
    # <stem>.grid.png belongs to <stem>.json; <stem>.<settings>.grid.png to a sibling result.
    images = sorted(p for p in path.parent.glob(f"{path.stem}.*png")
                    if p.is_file() and p.name[len(path.stem) + 1:].count(".") == 1)
    return ResultFile(result=result, path=path, images=[_abspath(p) for p in images])


def find_result_files(*paths: str | Path) -> list[ResultFile]:
    """Result files named directly, or found recursively under folders, each path once.

    A file named directly must be a result; under folders, other JSON files
    (``comparison.json``, configs) are skipped, and files that cannot be read as
    results (invalid JSON, a newer schema, damaged) are skipped with a warning.
    """
    found: dict[Path, ResultFile] = {}
    for given in paths:
        given = _abspath(given)
        if given.is_file():
            loaded = read_result_file(given)
            found.setdefault(loaded.path, loaded)
        elif given.is_dir():
            for path in sorted(given.rglob("*.json")):
                if path.name.startswith(".") or path.name == COMPARISON_FILE:
                    continue
                try:
                    loaded = read_result_file(path, strict=False)
                except VembedError as err:
                    log.warning("skipped %s", err)
                    continue
                if loaded is not None:
                    found.setdefault(loaded.path, loaded)
        else:
            raise VembedError(f"{given} does not exist; pass result folders or result files")
    return [found[p] for p in sorted(found)]


def read_train_log(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``train_log.jsonl``; each needs a numeric ``step`` and ``loss``."""
    rows = []
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise VembedError(f"{path}: cannot read the training log ({err})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise VembedError(f"{where(path, number)}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)
            for key in ("step", "loss")
        ):
            raise VembedError(f"{where(path, number)}: each line needs numeric 'step' and 'loss'")
        rows.append(row)
    return rows


def read_comparison(path: str | Path, known: dict[Path, ResultFile] | None = None) -> TrainingRun:
    """Read a run folder's ``comparison.json`` (and its ``train_log.jsonl`` when present)."""
    path = _abspath(path)
    folder = path.parent
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VembedError(f"{path}: cannot read comparison file ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get("pairs"), list):
        raise VembedError(f"{path}: a comparison file is a mapping with a 'pairs' list")
    known = known if known is not None else {}
    pairs = []
    for number, pair in enumerate(record["pairs"], start=1):
        if not isinstance(pair, dict) or not {"base", "tuned"} <= set(pair):
            raise VembedError(f"{path}: pair {number} needs 'base' and 'tuned' result paths")
        loaded = []
        for role in ("base", "tuned"):
            target = _abspath(folder / pair[role])
            if not target.is_file():
                raise VembedError(
                    f"{path}: pair {number} {role} result {pair[role]!r} does not exist"
                )
            if target not in known:
                known[target] = read_result_file(target)
            loaded.append(known[target])
        pairs.append((loaded[0], loaded[1]))
    log_path = folder / TRAIN_LOG_FILE
    log = read_train_log(log_path) if log_path.is_file() else []
    return TrainingRun(
        name=str(record.get("name") or folder.name),
        folder=folder,
        pairs=pairs,
        log=log,
        log_path=log_path if log_path.is_file() else None,
    )


def collect(*paths: str | Path) -> Collection:
    """All result files and training runs under ``paths`` (folders or result files)."""
    results = find_result_files(*paths)
    known = {r.path: r for r in results}
    runs = []
    for folder in _folders(paths):
        for comparison in sorted(folder.rglob(COMPARISON_FILE)):
            runs.append(read_comparison(comparison, known))
    unique: dict[Path, TrainingRun] = {}
    for run in runs:
        unique.setdefault(run.folder, run)
    return Collection(results=results, runs=[unique[f] for f in sorted(unique)])


def _folders(paths: Iterable[str | Path]) -> list[Path]:
    return [_abspath(p) for p in paths if Path(p).is_dir()]
