"""Line-numbered, strict readers for the text files of a dataset.

They exist so that every malformed row is reported as ``file:line: what is
wrong; what to do`` instead of a traceback from deep inside json, csv or the
UTF-8 codec, and so that nothing is guessed: a qrels header is recognised by
its column names, never by a row failing to parse, and a grade is a whole
number or the file is refused.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Iterable, Iterator

from vembed_bench.errors import VembedError, where

log = logging.getLogger(__name__)

REENCODE = "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)"

# Column names of a qrels header row, lower-cased: BEIR's "query-id corpus-id score" and common variants.
QUERY_ID_COLUMNS = frozenset({"query-id", "query_id", "queryid", "qid"})
CORPUS_ID_COLUMNS = frozenset({"corpus-id", "corpus_id", "corpusid", "doc_id", "docid", "doc-id"})
SCORE_COLUMNS = frozenset({"score", "relevance", "label", "grade"})
MAX_GRADE = 2**31 - 1  # pytrec_eval (trec_eval) holds grades in a C int
_GRADE = re.compile(r"\+?([0-9]+)(?:\.0*)?", re.ASCII)
GRADE_RULE = "grades must be whole numbers >= 0 (such as 0, 1, 2 or 2.0; 0 = not relevant)"
SHOWN_IDS = 5


def read_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file (a leading BOM is dropped).

    Invalid UTF-8 is reported with its line and byte offset instead of a
    ``UnicodeDecodeError`` from the middle of a read.
    """
    offset = 0
    with _open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise _decode_error(path, line_no, offset + err.start, raw[err.start]) from None
            offset += len(raw)
            yield line_no, line


def read_text(path: Path) -> str:
    """The whole of a UTF-8 text file (a leading BOM is dropped), with :func:`read_text_lines`'s errors."""
    with _open_binary(path) as handle:
        raw = handle.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line_no = raw.count(b"\n", 0, err.start) + 1
        raise _decode_error(path, line_no, err.start, raw[err.start]) from None


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line; reject malformed rows."""
    for line_no, line in read_text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise VembedError(
                f"{where(path, line_no)}: invalid JSON ({err.msg} at column {err.colno}); "
                "fix or remove this line"
            ) from None
        if not isinstance(row, dict):
            raise VembedError(
                f"{where(path, line_no)}: expected a JSON object, got {type(row).__name__}"
            )
        yield line_no, row


def require_id(row: dict[str, Any], name: str, path: Path, line_no: int) -> str:
    """``row[name]`` as an id: a non-blank string or an integer, else fail naming file and line."""
    if name not in row or row[name] is None:
        raise VembedError(f"{where(path, line_no)}: missing required field '{name}'")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise VembedError(
            f"{where(path, line_no)}: field '{name}' must be a string or an integer, "
            f"got {type(value).__name__} {json.dumps(value)[:40]}"
        )
    text = str(value)
    if not text.strip():
        raise VembedError(f"{where(path, line_no)}: field '{name}' is empty; every row needs a non-blank id")
    return text


def optional_text(row: dict[str, Any], name: str, path: Path, line_no: int) -> str:
    """``row[name]`` as text: ``""`` when absent or null, a string or number as written, else fail."""
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise VembedError(
            f"{where(path, line_no)}: field '{name}' must be a string, "
            f"got {type(value).__name__} {json.dumps(value)[:40]}"
        )
    return str(value)


def parse_grade(value: str, place: str, *, header_hint: bool = False) -> int:
    """A relevance grade: a whole number from 0 to :data:`MAX_GRADE` (``2`` or ``2.0``).

    ``0.5`` is not rounded, ``inf``/``nan``/``-1``/``1e400`` are not clipped:
    each is refused, naming ``place`` and the value, because any guess changes
    which documents count as relevant.
    """
    match = _GRADE.fullmatch(value.strip())
    grade = int(match.group(1)) if match else None
    if grade is None or grade > MAX_GRADE:
        hint = "; a header row must name its columns (query-id, corpus-id, score)" if header_hint else ""
        raise VembedError(f"{place}: score '{value}' is not a valid grade; {GRADE_RULE}{hint}")
    return grade


def is_qrels_header(cols: list[str]) -> bool:
    """Whether ``cols`` (3-column BEIR or 4-column TREC layout) are qrels column names."""
    names = [c.strip().lower() for c in cols]
    if len(names) == 4:
        names = [names[0], names[2], names[3]]
    return (
        len(names) == 3
        and names[0] in QUERY_ID_COLUMNS
        and names[1] in CORPUS_ID_COLUMNS
        and names[2] in SCORE_COLUMNS
    )


def read_qrels_tsv(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield ``(line_number, query_id, doc_id, grade)`` from a BEIR qrels TSV.

    BEIR files start with a ``query-id corpus-id score`` header; the first
    non-blank row is skipped only when its columns carry such names, so the
    first judgement of a header-less file is never lost. Four-column TREC qrels
    (``qid 0 docid grade``) are accepted as well. Empty ids, grades that are
    not whole numbers >= 0, and a second row for the same (query, document)
    pair are refused.
    """
    first_line: dict[tuple[str, str], int] = {}
    first_row = True
    for line_no, line in read_text_lines(path):
        if not line.strip():
            continue
        cols = line.rstrip("\n\r").split("\t") if "\t" in line else line.split()
        if first_row and is_qrels_header(cols):
            first_row = False
            continue
        header_hint, first_row = first_row, False
        if len(cols) == 4:  # TREC layout: qid iteration docid grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3:
            raise VembedError(
                f"{where(path, line_no)}: expected 3 tab-separated columns "
                f"(query-id, corpus-id, score), found {len(cols)}"
            )
        qid, did = cols[0].strip(), cols[1].strip()
        for name, value in (("query-id", qid), ("corpus-id", did)):
            if not value:
                raise VembedError(f"{where(path, line_no)}: empty {name}; every row needs a query-id, "
                                  "a corpus-id and a score")
        grade = parse_grade(cols[2], where(path, line_no), header_hint=header_hint)
        if (qid, did) in first_line:
            raise VembedError(
                f"{where(path, line_no)}: duplicate judgement of query-id '{qid}', corpus-id '{did}' "
                f"(first on line {first_line[qid, did]}); keep one row per pair"
            )
        first_line[qid, did] = line_no
        yield line_no, qid, did, grade


def warn_empty_items(path: Path | str, ids: Iterable[str]) -> None:
    """One warning for all items of ``path`` with nothing to encode (no text, title or image)."""
    ids = list(ids)
    if ids:
        shown = ", ".join(ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
        log.warning("%s: %d items have empty text (ids %s)", path, len(ids), shown)


def _open_binary(path: Path) -> Any:
    try:
        return open(path, "rb")
    except OSError as err:
        raise VembedError(f"{path}: cannot read ({err.strerror}); check the path and its permissions") from None


def _decode_error(path: Path, line_no: int, offset: int, byte: int) -> VembedError:
    return VembedError(
        f"{where(path, line_no)}: invalid UTF-8 (byte 0x{byte:02x} at byte offset {offset} of the file); "
        f"{REENCODE}"
    )
