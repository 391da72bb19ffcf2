"""Input keys: a string naming exactly what an encoder computes for one item in one role.

Two ``(item, role)`` pairs with equal keys are guaranteed the same vector from
the same encoder, so a runner can encode an input once and reuse its vector
across tasks (Flickr30k's text-to-image queries are its image-to-text corpus).
Keys are compared within one encoder only. They are built from what the model
actually sees:

* text: the exact prompt-formatted string (:func:`text_key`); when a model takes
  the prompt apart from the text (sentence-transformers' ``prompt=``) the pair,
  and when its query and document paths differ (a Router), the role too;
* images: ``"image:"`` + the sha256 of the file's bytes (:func:`image_key`), so a
  copied or renamed image is still recognised and an edited one is not.

An encoder without ``input_key`` is keyed by the runner on role + item content.
"""

from __future__ import annotations

import json
from pathlib import Path

from vembed_bench.encoders.text_inputs import ROLES
from vembed_bench.errors import VembedError

_IMAGE_DIGESTS: dict[tuple[str, int, int], str] = {}


def text_key(text: str, *, prefix: str | None = None, role: str | None = None, pair: bool = False) -> str:
    """``"text:" + text``; with ``pair=True`` (prefix passed apart) or a role, a JSON triple."""
    if not pair and role is None:
        return "text:" + text
    return "text:" + json.dumps([role, prefix or "", text], ensure_ascii=False)


def image_key(path: str | Path) -> str:
    """``"image:" + sha256(file bytes)``, from the shared file-digest memo (:mod:`vembed_bench.filehash`)."""
    from vembed_bench.filehash import file_digests

    return "image:" + file_digests([path])[0]


def check_role(role: str) -> str:
    """``role`` if it is ``query`` or ``document``, else a one-line error."""
    if role not in ROLES:
        raise VembedError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return role
