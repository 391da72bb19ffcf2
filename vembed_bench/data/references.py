"""Published scores a task card lists, so a run says at once whether it reproduces the paper.

A card may carry a ``references`` list::

    references:
      - model: openai/clip-vit-base-patch32        # the name or hub id the score belongs to
        aliases: [ViT-B-32 openai, clip-vit-base-patch32]
        split: test
        scores: {hit@1: 58.78, hit@5: 83.56, hit@10: 90.02}   # percent, as papers print them
        source: open_clip retrieval results table
        url: https://github.com/mlfoundations/open_clip/blob/main/docs/openclip_retrieval_results.csv

Scores are in percent unless ``scale: fraction``. This module only reads and matches them;
:mod:`vembed_bench.report.references` compares them with a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vembed_bench.errors import VembedError

_KEYS = {"model", "aliases", "split", "scores", "source", "url", "scale", "note"}


@dataclass(frozen=True)
class Reference:
    """One published model's scores on one task split (as fractions, like our scores)."""

    model: str
    scores: dict[str, float]
    source: str
    split: str | None = None
    url: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""

    def names(self) -> set[str]:
        return {_norm(self.model), *(_norm(a) for a in self.aliases)}

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "aliases": list(self.aliases), "split": self.split,
                "scores": dict(self.scores), "source": self.source, "url": self.url, "note": self.note}


def parse_references(raw: Any, where: str) -> list[Reference]:
    """The card's ``references`` value, checked: one line naming the card and the entry if wrong."""
    if raw in (None, []):
        return []
    if not isinstance(raw, list):
        raise VembedError(f"{where}: key 'references' must be a list of published scores")
    references = []
    for number, entry in enumerate(raw, start=1):
        at = f"{where}: references[{number}]"
        if not isinstance(entry, dict):
            raise VembedError(f"{at} must be a mapping with model, scores and source")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise VembedError(f"{at}: unknown key '{unknown[0]}'; allowed: {', '.join(sorted(_KEYS))}")
        for key in ("model", "scores", "source"):
            if key not in entry:
                raise VembedError(f"{at}: missing key '{key}'")
        scores, scale = entry["scores"], entry.get("scale", "percent")
        if scale not in ("percent", "fraction"):
            raise VembedError(f"{at}: scale '{scale}' is not percent or fraction")
        if not isinstance(scores, dict) or not scores or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
            raise VembedError(f"{at}: 'scores' must map metric names to numbers, e.g. {{ndcg@10: 83.68}}")
        divisor = 100.0 if scale == "percent" else 1.0
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise VembedError(f"{at}: 'aliases' must be a list of names")
        references.append(Reference(
            model=str(entry["model"]), scores={str(k): float(v) / divisor for k, v in scores.items()},
            source=str(entry["source"]), split=entry.get("split"), url=str(entry.get("url") or ""),
            aliases=tuple(aliases), note=str(entry.get("note") or ""),
        ))
    return references


def find_reference(references: list[Reference], names: list[str | None], split: str) -> Reference | None:
    """The first reference whose model or aliases equal one of ``names`` (case and ``_``/``-`` blind)
    and whose split, when it names one, is ``split``."""
    wanted = {_norm(n) for n in names if n}
    for reference in references:
        if reference.names() & wanted and reference.split in (None, split):
            return reference
    return None


def _norm(name: str) -> str:
    return str(name).strip().lower().replace("_", "-")
