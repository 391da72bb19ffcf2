"""Turning :class:`Item` objects into the exact strings a text model sees.

Every text encoder shares these rules so that the same item gives the same
string whichever backend encodes it:

* a document with a title is ``title + " " + text`` (the BEIR convention);
* a prompt containing ``{text}`` is a template; it may also contain
  ``{instruction}``, filled from the item's ``instruction`` field;
* otherwise the prompt is a prefix, and an item's instruction (if any) goes
  between the prefix and the text: ``prompt + "{instruction} {text}"``;
* items with an image are refused, naming the item, because silently encoding
  only the caption of an image-text item would give a wrong score.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

QUERY = "query"
DOCUMENT = "document"
ROLES = (QUERY, DOCUMENT)

# The prompt names sentence-transformers' own encode_query / encode_document look up.
ST_QUERY_PROMPT_KEYS = ("query",)
ST_DOCUMENT_PROMPT_KEYS = ("document", "passage", "corpus")

_FIELD = re.compile(r"\{(text|instruction)\}")


def item_text(item: Item) -> str:
    """The item's text, with the title in front when there is one (BEIR)."""
    if item.title:
        return f"{item.title} {item.text}" if item.text else item.title
    return item.text


def is_template(prompt: str | None) -> bool:
    """A prompt with a ``{text}`` slot is filled in, not prepended."""
    return bool(prompt) and "{text}" in prompt  # type: ignore[operator]


def fill_template(template: str, text: str, instruction: str = "") -> str:
    """Fill ``{text}`` and ``{instruction}`` in one pass.

    One regex pass (not ``str.format`` or chained ``replace``) so braces inside
    the text or the instruction are left alone.
    """
    values = {"text": text, "instruction": instruction}
    return _FIELD.sub(lambda m: values[m.group(1)], template)


def with_instruction(text: str, instruction: str) -> str:
    """``"{instruction} {text}"`` when the item has an instruction."""
    return f"{instruction} {text}" if instruction else text


def format_item(item: Item, prompt: str | None) -> str:
    """The full string for one item under a role's prompt."""
    text = item_text(item)
    if is_template(prompt):
        return fill_template(prompt, text, item.instruction)  # type: ignore[arg-type]
    return (prompt or "") + with_instruction(text, item.instruction)


def format_items(items: Sequence[Item], prompt: str | None, *, encoder: str) -> list[str]:
    """Format a whole list, refusing image items first (see :func:`refuse_images`)."""
    refuse_images(items, encoder=encoder)
    return [format_item(item, prompt) for item in items]


def split_prefix(
    items: Sequence[Item], prompt: str | None, *, encoder: str
) -> tuple[list[str], str | None]:
    """Texts without the prompt prefix, plus the prefix on its own.

    sentence-transformers wants the prefix passed separately (``prompt=``):
    some models pool without the prompt tokens (``include_prompt=False``), which
    only works when the library knows where the prompt ends. A template cannot
    be split that way, so it is filled in and no prefix is returned.
    """
    refuse_images(items, encoder=encoder)
    if is_template(prompt):
        return [format_item(item, prompt) for item in items], None
    texts = [with_instruction(item_text(item), item.instruction) for item in items]
    return texts, (prompt or None)


def refuse_images(items: Sequence[Item], *, encoder: str) -> None:
    """Raise a one-line :class:`VembedError` naming the first item with an image."""
    for item in items:
        if item.image is not None:
            raise VembedError(
                f"item {item.id!r} has an image but {encoder} is a text-only encoder; "
                "use an image or multimodal model for this task"
            )


def stored_prompts(folder: Path | None) -> dict[str, str]:
    """The ``prompts`` a sentence-transformers folder saved in its config (may be empty)."""
    if folder is None:
        return {}
    path = Path(folder) / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VembedError(f"{path}: cannot read sentence-transformers config ({exc})") from None
    prompts = data.get("prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict):
        return {}
    return {str(k): str(v) for k, v in prompts.items() if v is not None}


def resolve_prompts(
    query_prompt: str | None,
    document_prompt: str | None,
    stored: Mapping[str, str],
) -> dict[str, str]:
    """Per-role prompts: the user's choice wins, else the model's stored prompt.

    ``None`` means "not given" (fall back to the stored prompt); an empty string
    means "no prompt" and switches a stored prompt off. The result uses ``""``
    for "no prompt" so that descriptions and fingerprints have one spelling.
    """
    query = query_prompt if query_prompt is not None else _first(stored, ST_QUERY_PROMPT_KEYS)
    document = (
        document_prompt if document_prompt is not None else _first(stored, ST_DOCUMENT_PROMPT_KEYS)
    )
    return {QUERY: query or "", DOCUMENT: document or ""}


def _first(stored: Mapping[str, str], keys: Sequence[str]) -> str | None:
    """The first *non-empty* stored prompt among ``keys``.

    Non-empty, because sentence-transformers 6 fills a missing ``"document"``
    prompt with ``""``; taking that would hide a model's saved ``"passage"``
    prompt (E5-style models), which is what the model's authors meant.
    """
    for key in keys:
        if stored.get(key):
            return stored[key]
    return None
