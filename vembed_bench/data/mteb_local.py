"""Wrap a local BEIR folder as an mteb retrieval task, fully offline.

Why this exists: to cross-check vembed-bench's scores against mteb's on the very
same files (same queries, corpus and qrels; only the pipelines differ), and as
the basis of later ``loader: mteb`` task cards. mteb normally loads tasks from
the Hugging Face hub; this builds the task from ``corpus.jsonl``,
``queries.jsonl`` and ``qrels/<split>.tsv`` with the standard library, so it
needs no network and writes no dataset cache.

The files are read here with plain ``json``/``csv`` on purpose, not with
vembed-bench's own BEIR loader, so a parsing bug on our side cannot hide in the
cross-check. Two conventions are shared with vembed-bench so the numbers are
comparable: only queries that appear in the split's qrels are evaluated, and
queries whose judgements are all non-relevant (grade <= 0) are dropped (mteb
itself would keep them and score them 0).

mteb is an optional dependency (``pip install vembed-bench[mteb]``): it is
imported only inside :func:`beir_as_mteb_task`.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError


def beir_as_mteb_task(
    root: Path,
    *,
    name: str,
    split: str = "test",
    main_score: str = "ndcg_at_10",
    languages: Sequence[str] = ("eng-Latn",),
) -> Any:
    """Return an ``mteb`` ``AbsTaskRetrieval`` instance over the BEIR folder ``root``.

    ``name`` is the mteb task name (it also names mteb's result files),
    ``split`` the qrels file to evaluate, ``main_score`` an mteb score key
    (``ndcg_at_10``, ``recall_at_100``, ...), and ``languages`` the task's
    ISO 639-3 + script codes, which mteb requires. The dataset "revision" mteb
    records is a hash of the three files, so cached mteb results never outlive
    a change to the data. Use it as ``mteb.evaluate(model, task, cache=None)``.
    """
    root = Path(root)
    paths = _beir_paths(root, split)
    try:
        from mteb.abstasks import AbsTaskRetrieval
        from mteb.abstasks.task_metadata import TaskMetadata
    except ImportError as err:
        raise VembedError(
            "mteb is not installed; install the extra with: pip install 'vembed-bench[mteb]'"
        ) from err
    metadata = TaskMetadata(
        name=name,
        description=f"Local BEIR folder {root} (split {split}), loaded offline by vembed-bench.",
        dataset={"path": str(root.resolve()), "revision": _files_digest(paths)},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[split],
        eval_langs=list(languages),
        main_score=main_score,
    )

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = {"default": {split: _read_split(*paths)}}
        self.data_loaded = True

    task_class = type(
        "LocalBeirRetrieval", (AbsTaskRetrieval,), {"metadata": metadata, "load_data": load_data}
    )
    return task_class()


def _beir_paths(root: Path, split: str) -> tuple[Path, Path, Path]:
    paths = (root / "corpus.jsonl", root / "queries.jsonl", root / "qrels" / f"{split}.tsv")
    for path in paths:
        if not path.is_file():
            raise VembedError(
                f"{path} not found; a BEIR folder needs corpus.jsonl, queries.jsonl and qrels/<split>.tsv"
            )
    return paths


def _files_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _read_split(corpus_path: Path, queries_path: Path, qrels_path: Path) -> dict[str, Any]:
    """One split in mteb's ``RetrievalSplitData`` shape: two ``datasets.Dataset`` and a qrels dict."""
    from datasets import Dataset

    graded: dict[str, dict[str, int]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t")
        next(rows, None)  # header: query-id, corpus-id, score
        for row in rows:
            if row:
                graded.setdefault(row[0], {})[row[1]] = int(row[2])
    qrels = {qid: docs for qid, docs in graded.items() if any(g > 0 for g in docs.values())}

    corpus = _read_jsonl(corpus_path)
    queries = [q for q in _read_jsonl(queries_path) if str(q["_id"]) in qrels]
    return {
        "corpus": Dataset.from_dict({
            "id": [str(d["_id"]) for d in corpus],
            "title": [str(d.get("title") or "") for d in corpus],
            "text": [str(d.get("text") or "") for d in corpus],
        }),
        "queries": Dataset.from_dict({
            "id": [str(q["_id"]) for q in queries],
            "text": [str(q.get("text") or "") for q in queries],
        }),
        "relevant_docs": qrels,
        "top_ranked": None,
    }
