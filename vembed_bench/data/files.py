"""Line-numbered readers for the JSONL and TSV files of a dataset.

They exist so that every malformed row is reported as ``file:line: what is
wrong; what to do`` instead of a traceback from deep inside json or csv.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from vembed_bench.errors import VembedError, where


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, row)`` for each non-blank line; reject malformed rows."""
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise VembedError(
                    f"{where(path, line_no)}: not UTF-8 (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); save the file as UTF-8"
                ) from None
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


def require_field(row: dict[str, Any], name: str, path: Path, line_no: int) -> str:
    """Return ``row[name]`` as a string, or fail naming the file, line and field."""
    if name not in row or row[name] is None:
        raise VembedError(f"{where(path, line_no)}: missing required field '{name}'")
    return str(row[name])


def read_qrels_tsv(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """Yield ``(line_number, query_id, doc_id, grade)`` from a BEIR qrels TSV.

    BEIR files start with a ``query-id corpus-id score`` header; it is skipped
    when its third column is not an integer, so header-less files work too.
    Four-column TREC qrels (``qid 0 docid grade``) are accepted as well.
    """
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            cols = line.rstrip("\n\r").split("\t") if "\t" in line else line.split()
            if len(cols) == 4:  # TREC layout: qid iteration docid grade
                cols = [cols[0], cols[2], cols[3]]
            if len(cols) != 3:
                raise VembedError(
                    f"{where(path, line_no)}: expected 3 tab-separated columns "
                    f"(query-id, corpus-id, score), found {len(cols)}"
                )
            try:
                grade = int(float(cols[2]))
            except ValueError:
                if line_no == 1:
                    continue  # header row
                raise VembedError(
                    f"{where(path, line_no)}: score '{cols[2]}' is not a number"
                ) from None
            yield line_no, cols[0].strip(), cols[1].strip(), grade
