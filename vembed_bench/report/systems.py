"""Which results answer the same question, and what tells the rows of one model apart.

Two result files answer the same question when the same weights were run with
the same settings on the same data (and scored at the same cutoffs with the
same metric definitions): a leaderboard shows such results once and lists the
others as duplicates. A Matryoshka view that keeps every dimension is the
untruncated model, so it is the same result as the plain run.

Rows of one model that differ in a setting that moves the numbers (max
length, prompts, pooling, dtype, index...) carry those settings in their
label, e.g. ``all-MiniLM-L6-v2 [max_length 128]``, so a reader sees why two
rows of "the same model" score differently. The settings come from the
result's ``settings`` (schema 2) and its ``model_info`` (every schema).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from vembed_bench.results import Result

__all__ = [
    "MATRYOSHKA_KEY",
    "display_settings",
    "full_widths",
    "is_full_split",
    "matryoshka_dim",
    "result_identity",
    "sample_label",
    "settings_suffixes",
]

MATRYOSHKA_KEY = "matryoshka_dim"
"""``model_info`` key: leading embedding dimensions kept (see :mod:`.collect`)."""

# model_info keys that change the vectors (the encoder's own description of itself).
_MODEL_SETTINGS = (
    "max_length",
    "pooling",
    "prompts",
    "normalize",
    "dtype",
    "attention",
    "instruction",
    "instruction_separator",
    "padding_side",
)
# Result settings (schema 2) beside the encoder options; "limit"/"seed" are the query sample
# (results on a sample are never ranked with full splits) and "dim" is in the label already.
_RESULT_SETTINGS = ("index", "maxsim", "candidate_depth", "dtype")
# Encoder overrides that model_info already shows under another name.
_SHOWN_AS = {"query_prompt": "prompts", "document_prompt": "prompts"}
_MAX_VALUE = 24


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":"), default=str)


def matryoshka_dim(result: Result) -> int | None:
    """Leading dimensions a Matryoshka result kept (``None`` for an untruncated result)."""
    value = result.model_info.get(MATRYOSHKA_KEY)
    if value is None:
        value = (result.settings or {}).get("dim")
    return int(value) if value is not None else None


def is_full_split(result: Result) -> bool:
    """Every query of the split was evaluated (no ``--limit`` sample)."""
    return not (result.settings or {}).get("limit") and not result.limit


def sample_label(result: Result) -> str:
    """``query sample: limit N, seed S`` for a result on a ``--limit`` sample of the queries."""
    settings = result.settings or {}
    limit = settings.get("limit") or result.limit
    seed = settings.get("seed")
    return f"query sample: limit {limit}, seed {result.seed if seed is None else seed}"


def display_settings(result: Result) -> dict[str, Any]:
    """The settings of a result that change its numbers, by name (weights and data aside)."""
    info = result.model_info
    settings = result.settings or {}
    values: dict[str, Any] = {key: info[key] for key in _MODEL_SETTINGS if key in info}
    for key in _RESULT_SETTINGS:
        if settings.get(key) is not None:
            values[key] = settings[key]
    values.setdefault("index", result.search_info.get("index") or "flat")
    for key, value in sorted((settings.get("encoder") or {}).items()):
        shown = _SHOWN_AS.get(key, key)
        if shown not in values and key != "dim":
            values[key] = value
    return values


def full_widths(results: Iterable[Result]) -> dict[str, int]:
    """Weights fingerprint -> widest embedding of an untruncated result with those weights."""
    widths: dict[str, int] = {}
    for result in results:
        if matryoshka_dim(result) is None:
            fp = result.weights_fingerprint
            widths[fp] = max(widths.get(fp, 0), int(result.embedding_dim))
    return widths


def result_identity(result: Result, widths: Mapping[str, int]) -> str:
    """Equal for results that answer the same question: same weights, settings and data.

    ``widths`` (see :func:`full_widths`) says when a Matryoshka view keeps every dimension,
    which makes it the untruncated model.
    """
    fingerprint = result.weights_fingerprint
    dim = matryoshka_dim(result)
    if dim is not None and dim >= widths.get(fingerprint, dim + 1):
        dim = None
    settings = {k: v for k, v in (result.settings or {}).items() if k != "dim"}
    return _canonical(
        [
            fingerprint,
            str(result.task_info.get("data_fingerprint", "")),
            result.task,
            result.split,
            sorted(int(k) for k in result.k_values),
            result.metric_definitions,
            result.main_metric,
            dim,
            settings,
            display_settings(result),
            bool(result.search_info.get("exact", True)),
        ]
    )


def _show(value: Any) -> str:
    """A setting's value, short: long text is cut and tagged with a hash of the whole."""
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, (dict, list)):
        text = _canonical(value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    text = " ".join(text.split())
    if len(text) <= _MAX_VALUE:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
    return f"{text[:_MAX_VALUE - 8]}…#{digest}"


def settings_suffixes(results: Sequence[Result], group: Mapping[int, str]) -> dict[int, str]:
    """Index -> ``"max_length 128, pooling cls"``: the settings that differ between results of
    one group (``group``: index -> group name, usually the model name); "" when none differ."""
    members: dict[str, list[int]] = defaultdict(list)
    for index in sorted(group):
        members[group[index]].append(index)
    # An approximate index is named in the label already (see leaderboard._base_label).
    shown = {i: {k: v for k, v in display_settings(results[i]).items() if k != "index"} for i in group}
    suffixes: dict[int, str] = {}
    for indices in members.values():
        keys = sorted({k for i in indices for k in shown[i]})
        varying = [k for k in keys if len({_canonical(shown[i].get(k)) for i in indices}) > 1]
        for i in indices:
            suffixes[i] = ", ".join(
                f"{k} {_show(shown[i][k])}" if k in shown[i] else f"{k} unset" for k in varying
            )
    return suffixes
