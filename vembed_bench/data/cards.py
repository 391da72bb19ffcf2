"""Task cards: YAML files in ``tasks/`` that describe a task without code.

A card names its loader, the loader's parameters, splits, main metric and K
values. ``--task`` accepts a card name, a path to a card, or a dataset folder in
BEIR layout (which gets an implicit card).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from vembed_bench.data.files import read_text
from vembed_bench.data.paths import is_plain_name, resolve_inside
from vembed_bench.errors import VembedError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_K_VALUES = (1, 5, 10, 100)


@dataclass
class TaskCard:
    """The parsed, validated content of one task card."""

    name: str
    loader: str
    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    splits: list[str] = field(default_factory=lambda: ["test"])
    main_metric: str = "ndcg@10"
    k_values: list[int] = field(default_factory=lambda: list(DEFAULT_K_VALUES))
    modality: str = "text-to-text"
    size: dict[str, int] = field(default_factory=dict)
    exclude_self: bool = False
    limit: int | None = None
    aliases: list[str] = field(default_factory=list)
    suite: str | list[str] = ""  # suites whose leaderboard average this task counts towards
    license: str = ""
    reference: str = ""
    languages: list[str] = field(default_factory=list)
    """ISO 639-3 codes with script, as mteb writes them (``eng-Latn``, ``cmn-Hans``); exports need them."""
    references: list[dict[str, Any]] = field(default_factory=list)
    """Published scores of named models (:mod:`vembed_bench.data.references`)."""
    path: str | None = None  # the card file this came from (None for implicit cards)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def card_dirs() -> list[Path]:
    """Folders searched for cards, first match wins.

    ``$VEMBED_TASKS_DIR`` (os.pathsep-separated), then ``./tasks``, then the
    ``tasks/`` folder of the source checkout, then cards shipped inside the wheel.
    """
    dirs = [Path(p) for p in os.environ.get("VEMBED_TASKS_DIR", "").split(os.pathsep) if p]
    dirs += [Path.cwd() / "tasks", PACKAGE_DIR.parent / "tasks", PACKAGE_DIR / "_task_cards"]
    seen, unique = set(), []
    for d in dirs:
        key = d.resolve()
        if key not in seen and d.is_dir():
            seen.add(key)
            unique.append(d)
    return unique


def list_cards() -> list[TaskCard]:
    """All cards found in :func:`card_dirs`, by name (first folder wins)."""
    cards: dict[str, TaskCard] = {}
    for directory in card_dirs():
        for path in sorted(directory.glob("*.yaml")):
            card = read_card(path)
            cards.setdefault(card.name, card)
    return [cards[name] for name in sorted(cards)]


def resolve_card(task: str | Path) -> TaskCard:
    """Turn a card name, card path or BEIR folder into a :class:`TaskCard`."""
    path = Path(task)
    if path.suffix in {".yaml", ".yml"}:
        if not path.is_file():
            raise VembedError(f"task card {path} does not exist")
        return read_card(path)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise VembedError(
                f"{path} is a folder but not in BEIR layout (no corpus.jsonl); "
                "pass a task card name, a card file, or a BEIR folder"
            )
        splits = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) or ["test"]
        default = "test" if "test" in splits else splits[0]
        return TaskCard(
            name=path.resolve().name,
            loader="beir",
            params={"path": str(path.resolve())},
            splits=[default] + [s for s in splits if s != default],
        )
    names = {c.name: c for c in list_cards()}
    aliases = {alias: c for c in names.values() for alias in c.aliases}
    card = names.get(str(task)) or aliases.get(str(task))
    if card is None:
        known = ", ".join(sorted(names)) or "none"
        raise VembedError(
            f"unknown task '{task}'; known tasks: {known} (or pass a card path or a BEIR folder)"
        )
    return card


def read_card(path: Path) -> TaskCard:
    """Parse and validate one card file, naming the file and key on any error."""
    try:
        raw = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise VembedError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise VembedError(f"{path}: a task card must be a YAML mapping")
    known = {f.name for f in fields(TaskCard)} - {"path"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise VembedError(f"{path}: unknown key '{unknown[0]}'; allowed keys: {', '.join(sorted(known))}")
    for key in ("name", "loader"):
        if key not in raw:
            raise VembedError(f"{path}: missing required key '{key}'")
    card = TaskCard(**raw, path=str(path.resolve()))
    _check_types(card, path)
    return card


def _check_types(card: TaskCard, path: Path) -> None:
    checks = {
        "name": isinstance(card.name, str),
        "loader": isinstance(card.loader, str),
        "params": isinstance(card.params, dict),
        "splits": isinstance(card.splits, list) and bool(card.splits)
        and all(isinstance(s, str) and is_plain_name(s) for s in card.splits),
        "k_values": isinstance(card.k_values, list)
        and all(isinstance(k, int) and k > 0 for k in card.k_values),
        "main_metric": isinstance(card.main_metric, str),
        "exclude_self": isinstance(card.exclude_self, bool),
        "aliases": isinstance(card.aliases, list),
        "suite": isinstance(card.suite, (str, list)),
        "limit": card.limit is None or (isinstance(card.limit, int) and card.limit > 0),
        "languages": isinstance(card.languages, list) and all(isinstance(x, str) for x in card.languages),
    }
    for key, ok in checks.items():
        if not ok:
            raise VembedError(f"{path}: key '{key}' has the wrong type or value: {getattr(card, key)!r}")
    from vembed_bench.data.references import parse_references

    parse_references(card.references, str(path))


def resolve_param_path(value: str, card: TaskCard, key: str = "path") -> Path:
    """Resolve the path parameter ``params.<key>`` of a card, confined to the folder it is relative to.

    * ``@package/...`` points inside the installed ``vembed_bench`` package (data
      shipped with the tool) and must stay inside it;
    * a relative path is relative to the card's folder and must stay inside it;
    * an absolute path, or one written with ``~`` or ``$VARS`` (expanded), is used
      as written: the user spelled out where the data is.

    "Inside" compares resolved paths, so neither ``..`` nor a symlink can leave
    the folder (a card must not make the tool read arbitrary files). The path
    returned is the folder joined with ``value``, unresolved, as it always was.
    """
    if value.startswith("@package/"):
        relative = value.removeprefix("@package/")
        if resolve_inside(PACKAGE_DIR, relative) is None:
            raise VembedError(
                f"{card.path or card.name}: params.{key} '{value}' resolves outside the vembed_bench "
                f"package {PACKAGE_DIR}; an @package/ path must stay inside the package"
            )
        return PACKAGE_DIR / relative
    if value.startswith("~") or "$" in value or Path(value).is_absolute():
        expanded = Path(os.path.expanduser(os.path.expandvars(value)))
        return expanded if expanded.is_absolute() or not card.path else Path(card.path).parent / expanded
    if not card.path:  # an implicit card (a folder given on the command line): relative to the cwd
        return Path(value)
    folder = Path(card.path).parent
    if resolve_inside(folder, value) is None:
        raise VembedError(
            f"{card.path}: params.{key} '{value}' resolves outside the card's folder {folder}; "
            "keep relative paths inside it, or write the data's absolute path"
        )
    return folder / value
