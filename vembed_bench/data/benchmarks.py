"""Benchmark cards: a named list of tasks, run together with ``eval --benchmark NAME``.

A benchmark card is a YAML file in a ``benchmarks/`` folder beside the task
cards (``tasks/benchmarks/vembed-core.yaml``)::

    name: vembed-core
    description: The tasks vembed-bench was built for.
    tasks: [sop_i2i, flickr30k, t2retrieval, mmeb]

Every task it names must be a known task card (or alias); an unknown one is
refused naming the card file, the line and the task, before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from vembed_bench.data.cards import card_dirs, resolve_card
from vembed_bench.errors import VembedError, where

_KEYS = {"name", "description", "tasks", "reference"}


@dataclass(frozen=True)
class BenchmarkCard:
    """A checked benchmark card: its name, description and task names (as written)."""

    name: str
    tasks: tuple[str, ...]
    description: str = ""
    reference: str = ""
    path: str | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)


def benchmark_dirs() -> list[Path]:
    """``benchmarks/`` under each task-card folder, in the same precedence."""
    return [d / "benchmarks" for d in card_dirs() if (d / "benchmarks").is_dir()]


def list_benchmarks() -> list[BenchmarkCard]:
    cards: dict[str, BenchmarkCard] = {}
    for directory in benchmark_dirs():
        for path in sorted(directory.glob("*.yaml")):
            card = read_benchmark(path)
            cards.setdefault(card.name, card)
    return [cards[name] for name in sorted(cards)]


def resolve_benchmark(name: str | Path) -> BenchmarkCard:
    """A benchmark card by name or file path, with every task it names checked."""
    path = Path(name)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise VembedError(f"benchmark card {path} does not exist")
        card = read_benchmark(path)
    else:
        known = {c.name: c for c in list_benchmarks()}
        if str(name) not in known:
            raise VembedError(f"unknown benchmark '{name}'; known benchmarks: {', '.join(known) or 'none'} "
                              "(or pass a benchmark card file)")
        card = known[str(name)]
    for task in card.tasks:
        try:
            resolve_card(task)
        except VembedError as err:
            raise VembedError(f"{where(card.path, card.lines.get(task))}: benchmark '{card.name}' names task "
                              f"'{task}', which cannot be used: {err}") from None
    return card


def read_benchmark(path: Path) -> BenchmarkCard:
    """Parse one benchmark card, naming the file (and line) of any problem."""
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except UnicodeDecodeError as err:
        raise VembedError(f"{path}: not UTF-8 (byte {err.start}); re-save the card as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise VembedError(f"{where(path, line)}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise VembedError(f"{path}: a benchmark card must be a YAML mapping with name and tasks")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise VembedError(f"{path}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(_KEYS))}")
    name, tasks = raw.get("name"), raw.get("tasks")
    if not isinstance(name, str) or not name.strip():
        raise VembedError(f"{path}: key 'name' must be a non-empty string")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t.strip() for t in tasks):
        raise VembedError(f"{path}: key 'tasks' must be a non-empty list of task names")
    lines = {task: _line_of(text, task) for task in tasks}
    return BenchmarkCard(name=name, tasks=tuple(tasks), description=str(raw.get("description") or ""),
                         reference=str(raw.get("reference") or ""), path=str(path.resolve()), lines=lines)


def _line_of(text: str, task: str) -> int | None:
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.replace("'", " ").replace('"', " ").replace(",", " ").replace("[", " ").replace("]", " ")
        if task in words.split():
            return number
    return None
