"""Wrap a local BEIR folder as an mteb retrieval task, fully offline.

Why this exists: to cross-check vembed-bench's scores against mteb's on the very
same files (same queries, corpus and qrels; only the pipelines differ), and as
the basis of later ``loader: mteb`` task cards. mteb normally loads tasks from
the Hugging Face hub; this builds the task from ``corpus.jsonl``,
``queries.jsonl`` and ``qrels/<split>.tsv`` with the standard library, so it
needs no network and writes no dataset cache.

The files are read here with plain ``json`` and ``str.split`` on purpose, not with
vembed-bench's own BEIR loader, so a parsing bug on our side cannot hide in the
cross-check. Two conventions are shared with vembed-bench so the numbers are
comparable: only queries that appear in the split's qrels are evaluated, and
queries whose judgements are all non-relevant (grade <= 0) are dropped (mteb
itself would keep them and score them 0). The reading is as strict as the
loader's, so a bad file is refused with ``file:line`` here too rather than
scored differently: invalid UTF-8 or JSON, blank or duplicate ids, a qrels
header not named like BEIR's (the first row is skipped only when it is one),
grades that are not whole numbers >= 0, duplicate or unknown (query, document)
pairs. The files are parsed when the task is built, not inside ``mteb.evaluate``,
which would record the error and carry on.

mteb is an optional dependency (``pip install vembed-bench[mteb]``): it is
imported only inside :func:`beir_as_mteb_task`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vembed_bench.data.files import is_qrels_header
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

    split_data = _read_split(*paths)

    def load_data(self: Any, num_proc: int | None = None, **kwargs: Any) -> None:
        if self.data_loaded:
            return
        self.dataset = {"default": {split: split_data}}
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


def _lines(path: Path) -> list[tuple[int, str]]:
    """``(line_number, line)`` of a UTF-8 file; invalid UTF-8 is one line naming file, line and offset."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise VembedError(f"{path}: cannot read ({err.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise VembedError(f"{path}:{line}: invalid UTF-8 (byte 0x{raw[err.start]:02x} at byte offset "
                          f"{err.start}); re-encode the file as UTF-8") from None
    return list(enumerate(text.split("\n"), start=1))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for line_no, line in _lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise VembedError(f"{path}:{line_no}: invalid JSON ({err})") from None
        ident = row.get("_id") if isinstance(row, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, (str, int)) or not str(ident).strip():
            raise VembedError(f"{path}:{line_no}: every row needs a non-blank '_id'")
        if str(ident) in rows:
            raise VembedError(f"{path}:{line_no}: duplicate _id '{ident}'")
        rows[str(ident)] = row
    return list(rows.values())


def _grade(text: str, place: str) -> int:
    whole, _, fraction = text.strip().partition(".")
    if not (whole.isascii() and whole.isdigit()) or fraction.strip("0"):
        raise VembedError(f"{place}: score '{text}' is not a whole number >= 0")
    return int(whole)


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    graded: dict[str, dict[str, int]] = {}
    lines = [(n, line) for n, line in _lines(path) if line.strip()]
    for index, (line_no, line) in enumerate(lines):
        row = line.rstrip("\r").split("\t")
        if index == 0 and is_qrels_header(row):
            continue
        if len(row) != 3 or not row[0].strip() or not row[1].strip():
            raise VembedError(f"{path}:{line_no}: expected query-id, corpus-id and score, tab-separated")
        qid, did = row[0].strip(), row[1].strip()
        if did in graded.get(qid, {}):
            raise VembedError(f"{path}:{line_no}: duplicate judgement of ({qid}, {did})")
        graded.setdefault(qid, {})[did] = _grade(row[2], f"{path}:{line_no}")
    return graded


def _read_split(corpus_path: Path, queries_path: Path, qrels_path: Path) -> dict[str, Any]:
    """One split in mteb's ``RetrievalSplitData`` shape: two ``datasets.Dataset`` and a qrels dict."""
    from datasets import Dataset

    graded = _read_qrels(qrels_path)
    qrels = {qid: docs for qid, docs in graded.items() if any(g > 0 for g in docs.values())}
    corpus = _read_jsonl(corpus_path)
    all_queries = _read_jsonl(queries_path)
    known_queries = {str(q["_id"]) for q in all_queries}
    known_docs = {str(d["_id"]) for d in corpus}
    for qid, docs in graded.items():
        unknown = [f"query-id '{qid}'"] if qid not in known_queries else []
        unknown += [f"corpus-id '{did}'" for did in docs if did not in known_docs]
        if unknown:
            raise VembedError(f"{qrels_path}: unknown {unknown[0]} (not in {queries_path.name} / {corpus_path.name})")
    queries = [q for q in all_queries if str(q["_id"]) in qrels]
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
