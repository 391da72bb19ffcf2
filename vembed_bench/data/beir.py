"""Loader for datasets in BEIR layout, optionally with images and instructions.

Layout::

    root/corpus.jsonl        {"_id", "title", "text", ["image"], ["instruction"]}
    root/queries.jsonl       {"_id", "text", ["image"], ["instruction"]}
    root/qrels/<split>.tsv   query-id <TAB> corpus-id <TAB> score   (header row)

A real BEIR folder works unchanged. Only queries that appear in the split's
qrels are evaluated; queries whose judgements are all non-relevant (grade <= 0)
are skipped with a warning giving the count, as pytrec_eval-based tools do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vembed_bench.data.files import optional_text, read_jsonl, read_qrels_tsv, require_id, warn_empty_items
from vembed_bench.data.images import resolve_image
from vembed_bench.data.paths import require_plain_name
from vembed_bench.data.types import Item, Qrels, TaskData
from vembed_bench.errors import VembedError, where

log = logging.getLogger(__name__)


def load_beir(
    root: str | Path,
    split: str = "test",
    *,
    name: str | None = None,
    exclude_self: bool = False,
    check_images: bool = True,
) -> TaskData:
    """Load one split of a BEIR-layout folder into a :class:`TaskData`."""
    root = Path(root)
    if not root.is_dir():
        raise VembedError(
            f"dataset folder {root} does not exist; pass a folder holding corpus.jsonl, "
            "queries.jsonl and qrels/<split>.tsv"
        )
    require_plain_name(split, str(root), "split")
    corpus_path, queries_path = root / "corpus.jsonl", root / "queries.jsonl"
    qrels_path = root / "qrels" / f"{split}.tsv"
    for required in (corpus_path, queries_path):
        if not required.is_file():
            raise VembedError(f"{required} not found; a BEIR folder needs corpus.jsonl and queries.jsonl")
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise VembedError(
            f"{qrels_path} not found; available splits: {', '.join(available) or 'none'}"
        )

    corpus = _read_items(corpus_path, root, check_images)
    if not corpus:
        raise VembedError(f"{corpus_path}: the corpus is empty; add at least one document")
    queries = _read_items(queries_path, root, check_images)
    qrels, skipped = _read_qrels(qrels_path, queries, corpus)
    if skipped:
        log.warning(
            "%s: skipped %d of %d queries with no relevant documents (all grades <= 0)",
            qrels_path, skipped, skipped + len(qrels),
        )
    if not qrels:
        raise VembedError(f"{qrels_path}: no query has a relevant document; nothing to evaluate")

    evaluated = [queries[qid] for qid in queries if qid in qrels]
    return TaskData(
        name=name or root.name,
        split=split,
        queries=evaluated,
        corpus=list(corpus.values()),
        qrels=qrels,
        root=root.resolve(),
        exclude_self=exclude_self,
        skipped_queries=skipped,
        meta={"files": [str(p) for p in (corpus_path, queries_path, qrels_path)]},
    )


def _read_items(path: Path, root: Path, check_images: bool) -> dict[str, Item]:
    items: dict[str, Item] = {}
    first_line: dict[str, int] = {}
    empty: list[str] = []
    for line_no, row in read_jsonl(path):
        item_id = require_id(row, "_id", path, line_no)
        if item_id in items:
            raise VembedError(
                f"{where(path, line_no)}: duplicate _id '{item_id}' "
                f"(first on line {first_line[item_id]}); ids must be unique"
            )
        if not any(key in row for key in ("text", "title", "image")):
            raise VembedError(
                f"{where(path, line_no)}: missing required field 'text' (or 'image') for _id '{item_id}'"
            )
        item = items[item_id] = _to_item(item_id, row, root, path, line_no, check_images)
        first_line[item_id] = line_no
        if not (item.text.strip() or item.title.strip() or item.image):
            empty.append(item_id)
    warn_empty_items(path, empty)
    return items


def _to_item(item_id: str, row: dict[str, Any], root: Path, path: Path, line_no: int, check_images: bool) -> Item:
    image = optional_text(row, "image", path, line_no)
    return Item(
        id=item_id,
        text=optional_text(row, "text", path, line_no),
        title=optional_text(row, "title", path, line_no),
        image=resolve_image(root, image, path, line_no, check_images) if image else None,
        instruction=optional_text(row, "instruction", path, line_no),
    )


def _read_qrels(path: Path, queries: dict[str, Item], corpus: dict[str, Item]) -> tuple[Qrels, int]:
    graded: Qrels = {}
    for line_no, qid, did, grade in read_qrels_tsv(path):
        if qid not in queries:
            raise VembedError(
                f"{where(path, line_no)}: unknown query-id '{qid}' (not in queries.jsonl); "
                "fix the qrels or add the query"
            )
        if did not in corpus:
            raise VembedError(
                f"{where(path, line_no)}: unknown corpus-id '{did}' (not in corpus.jsonl); "
                "fix the qrels or add the document"
            )
        graded.setdefault(qid, {})[did] = grade
    relevant = {qid: docs for qid, docs in graded.items() if any(g > 0 for g in docs.values())}
    return relevant, len(graded) - len(relevant)
