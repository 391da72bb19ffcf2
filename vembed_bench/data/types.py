"""The task model: what every loader produces and every later layer consumes.

A task is queries, a corpus and graded qrels. Each item may carry text, an image
path (relative to the dataset root, already resolved and checked by the loader),
and an instruction, so text, image and mixed-modality tasks share one shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

Qrels = dict[str, dict[str, int]]
"""``qrels[query_id][doc_id] = graded relevance`` (> 0 means relevant)."""


@dataclass(frozen=True)
class Item:
    """One query or one document."""

    id: str
    text: str = ""
    title: str = ""
    image: Path | None = None
    instruction: str = ""

    @property
    def modality(self) -> str:
        has_text = bool(self.text or self.title)
        if self.image is not None and has_text:
            return "image-text"
        return "image" if self.image is not None else "text"


@dataclass
class TaskData:
    """Loaded data of one task split, ready to encode and search.

    ``exclude_self`` removes a query's own document (same id) from its results,
    as in image-to-image retrieval where the query image is also in the corpus.
    ``candidates`` restricts each query to its own candidate documents (MMEB).
    """

    name: str
    split: str
    queries: list[Item]
    corpus: list[Item]
    qrels: Qrels
    root: Path | None = None
    exclude_self: bool = False
    candidates: dict[str, list[str]] | None = None
    skipped_queries: int = 0
    meta: dict[str, object] = field(default_factory=dict)

    def query_ids(self) -> list[str]:
        return [q.id for q in self.queries]

    def corpus_ids(self) -> list[str]:
        return [d.id for d in self.corpus]

    def modalities(self) -> Mapping[str, list[str]]:
        return {
            "query": sorted({q.modality for q in self.queries}),
            "document": sorted({d.modality for d in self.corpus}),
        }
