"""Display names: what results, tables and result folders call a model.

The ``name`` option (``--model-name``) always wins. Without it, a hub id given
as the model is its own name, and a local folder is named, in this order, by:

1. its model card's YAML front matter: ``model_name``, else ``model-index[0].name``;
2. its model card's first ``# `` heading (code blocks skipped);
3. ``config.json``'s ``_name_or_path`` when that is a hub id (``org/name``);
4. the folder's own name, or, when that name says nothing (``model``, ``final``,
   ``best``, ``output``, ``merged``, ``checkpoint-123``...), the nearest parent
   whose name does: ``runs/faq-lr5/model`` is ``faq-lr5``.

Titles that name no model are skipped at steps 1-2: sentence-transformers'
auto-generated card ("SentenceTransformer based on ..."), PyLate's, and the
Hugging Face template ("Model Card for Model ID", unrendered ``{{ }}``). At
step 3, ``_name_or_path`` is where the weights were *loaded from* before they
were saved, which for a fine-tuned folder is its base model; it is skipped when
the card names it as ``base_model`` or the folder holds trainer state. A
Hugging Face cache snapshot (``models--org--name/snapshots/<hash>``) is named
``org/name`` before any of the steps: the repo id is exact, while its config
often names the model it was trained from.

Only README.md and config.json are read, so naming never loads weights, and a
file that cannot be parsed only skips its rule.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from vembed_bench.encoders import folders

CARD_FILE = "README.md"
_CARD_LIMIT = 1 << 20  # bytes of a model card read: front matter and title come first
_MAX_NAME = 120  # a "title" longer than this is a sentence, not a name

_GENERIC_TITLE = re.compile(
    r"^(?:(?:sentence[ -]?transformers?|sparse[ -]?encoder|cross[ -]?encoder|pylate(?: model)?|model)"
    r"(?:\s+(?:model\s+)?based on\b.*)?"
    r"|model card(?: for model id)?|model id|readme|untitled|todo)$",
    re.IGNORECASE,
)
_MODEL_CARD_FOR = re.compile(r"^model card for\s+", re.IGNORECASE)
_GENERIC_FOLDER = re.compile(
    r"^(?:model|models|final|best|output|outputs|merged|latest|last|export|exported|hf|snapshot"
    r"|(?:final|best|merged|last|latest)[-_]model|checkpoints?(?:[-_]\d+)?|(?:step|epoch)[-_]?\d+)$",
    re.IGNORECASE,
)
_TRAINER_FILES = ("trainer_state.json", "training_args.bin")
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<[^>]+>")


def display_name(source: str | Path, folder: str | Path | None = None) -> str:
    """The default name of a model given as ``source`` (a folder, or a hub id whose
    files are in ``folder``): the hub id as given, else :func:`folder_display_name`."""
    text = str(source).rstrip("/\\") or str(source)
    path = Path(text).expanduser()
    if not path.is_dir():
        return text
    return folder_display_name(path)


def folder_display_name(folder: str | Path) -> str:
    """A local folder's display name by the rules of the module docstring."""
    path = _absolute(folder)
    card = read_card(path)
    return (hub_cache_repo(path) or card_name(card) or config_name(path, card)
            or folder_name(path))


def read_card(folder: Path) -> tuple[dict[str, Any], str]:
    """``(front matter, body)`` of the folder's README.md (empty when absent or unreadable)."""
    path = Path(folder) / CARD_FILE
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(_CARD_LIMIT)
    except OSError:
        return {}, ""
    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        return {}, text
    end = re.search(r"^---\s*$", text[3:], re.MULTILINE)
    if end is None:
        return {}, text
    import yaml

    try:
        meta = yaml.safe_load(text[3:3 + end.start()])
    except yaml.YAMLError:
        meta = None
    return (meta if isinstance(meta, dict) else {}), text[3 + end.end():]


def card_name(card: tuple[dict[str, Any], str]) -> str | None:
    """Rules 1-2: the card's ``model_name`` / ``model-index[0].name``, else its first heading."""
    meta, body = card
    candidates: list[Any] = [meta.get("model_name")]
    index = meta.get("model-index")
    if isinstance(index, list) and index and isinstance(index[0], dict):
        candidates.append(index[0].get("name"))
    for value in candidates:
        name = _meaningful_title(value)
        if name:
            return name
    return _meaningful_title(first_heading(body))


def first_heading(markdown: str) -> str | None:
    """The text of the first level-1 ``# `` heading outside fenced code blocks."""
    fence: str | None = None
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            match = _HEADING.match(line)
            if match:
                return match.group(1)
    return None


def config_name(folder: Path, card: tuple[dict[str, Any], str] = ({}, "")) -> str | None:
    """Rule 3: ``config.json``'s ``_name_or_path`` when it is a hub id and not the base model."""
    try:
        config = folders.hf_config(folder)
    except Exception:  # noqa: BLE001 - an unreadable config only skips this rule
        return None
    value = (config or {}).get("_name_or_path")
    if not isinstance(value, str) or not folders.looks_like_hub_id(value):
        return None
    base = card[0].get("base_model")
    bases = base if isinstance(base, list) else [base]
    if value in bases or any((folder / name).exists() for name in _TRAINER_FILES):
        return None
    return value


def folder_name(folder: str | Path) -> str:
    """Rule 4: the folder's name, or its nearest parent's when the name is generic."""
    path = _absolute(folder)
    for candidate in (path, *path.parents):
        if candidate.name and not is_generic_folder_name(candidate.name):
            return candidate.name
    return path.name or str(path)


def hub_cache_repo(folder: str | Path) -> str | None:
    """``org/name`` for a Hugging Face cache snapshot folder (``models--org--name/snapshots/<hash>``)."""
    path = _absolute(folder)
    repo = path.parent.parent.name
    if path.parent.name == "snapshots" and repo.startswith("models--") and len(repo) > len("models--"):
        return repo[len("models--"):].replace("--", "/")
    return None


def is_generic_folder_name(name: str) -> bool:
    """Names that say where a model sits in a run, not which model it is."""
    return bool(_GENERIC_FOLDER.match(name))


def is_generic_title(title: str) -> bool:
    """Titles that name no model (auto-generated or template cards)."""
    return "{{" in title or bool(_GENERIC_TITLE.match(title.strip()))


def _meaningful_title(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = _TAG.sub("", _LINK.sub(r"\1", value)).replace("**", "").replace("`", "").strip()
    text = _MODEL_CARD_FOR.sub("", text) if not is_generic_title(text) else text
    if not text or len(text) > _MAX_NAME or is_generic_title(text):
        return None
    return text


def _absolute(folder: str | Path) -> Path:
    """Absolute and normalised, without resolving symlinks (a linked folder keeps the name given)."""
    return Path(os.path.normpath(Path(folder).expanduser().absolute()))
