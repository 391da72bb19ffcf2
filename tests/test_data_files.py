"""The strict text readers of vembed_bench.data.files, value by value.

tests/test_data_bad_inputs.py feeds whole datasets through the loaders; these pin what the
readers themselves return and the exact one-line messages they give (the place, what is wrong
and what to do), with expectations written out by hand.
"""

from __future__ import annotations

import logging

import pytest
from conftest import write_beir

from vembed_bench.data.beir import load_beir
from vembed_bench.data.files import (
    GRADE_RULE,
    MAX_GRADE,
    optional_text,
    parse_grade,
    read_jsonl,
    read_qrels_tsv,
    read_text,
    read_text_lines,
    require_id,
    warn_empty_items,
)
from vembed_bench.errors import VembedError

HEADER = "query-id\tcorpus-id\tscore\n"


def _refused(call) -> str:
    with pytest.raises(VembedError) as err:
        call()
    return str(err.value)


def test_blank_lines_are_skipped_not_the_end_of_the_file(tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"_id": "a"}\n\n   \n{"_id": "b"}\n')
    assert list(read_jsonl(jsonl)) == [(1, {"_id": "a"}), (4, {"_id": "b"})]
    qrels = tmp_path / "q.tsv"
    qrels.write_text(HEADER + "q1\td1\t1\n\n\t\nq2\td2\t2\n")
    assert list(read_qrels_tsv(qrels)) == [(2, "q1", "d1", 1), (5, "q2", "d2", 2)]


def test_a_byte_order_mark_is_dropped_on_the_first_line_only(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfone\n\xef\xbb\xbftwo\n")
    assert list(read_text_lines(path)) == [(1, "one\n"), (2, "\ufefftwo\n")]
    assert read_text(path) == "one\n\ufefftwo\n"
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(b'\xef\xbb\xbf{"_id": "a"}\n\xef\xbb\xbf{"_id": "b"}\n')  # two files glued together
    assert _refused(lambda: list(read_jsonl(jsonl))) == (
        f"{jsonl}:2: invalid JSON (Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1); "
        "fix or remove this line")


def test_read_text_reports_the_line_of_a_bad_byte_counting_a_leading_newline(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_bytes(b"\nname: caf\xe9\n")
    assert _refused(lambda: read_text(path)) == (
        f"{path}:2: invalid UTF-8 (byte 0xe9 at byte offset 10 of the file); "
        "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8 FILE > FILE.utf8)")


def test_a_missing_file_says_what_to_check(tmp_path):
    missing = tmp_path / "nope.jsonl"
    message = f"{missing}: cannot read (No such file or directory); check the path and its permissions"
    assert _refused(lambda: list(read_jsonl(missing))) == message
    assert _refused(lambda: read_text(missing)) == message


def test_wrong_field_types_show_the_type_and_the_start_of_the_value(tmp_path):
    long = ["x" * 60]
    assert _refused(lambda: require_id({"_id": long}, "_id", tmp_path / "f", 3)) == (
        f"{tmp_path / 'f'}:3: field '_id' must be a string or an integer, got list " + '["' + "x" * 38)
    assert _refused(lambda: optional_text({"text": {"a": 1}}, "text", tmp_path / "f", 4)) == (
        f"{tmp_path / 'f'}:4: field 'text' must be a string, got dict " + '{"a": 1}')
    assert _refused(lambda: optional_text({"title": long}, "title", tmp_path / "f", 5)).endswith(
        'got list ["' + "x" * 38)
    assert require_id({"_id": 7}, "_id", tmp_path, 1) == "7"
    assert optional_text({"text": 2.5}, "text", tmp_path, 1) == "2.5" and optional_text({}, "text", tmp_path, 1) == ""


def test_parse_grade_bounds_and_messages():
    assert parse_grade(str(MAX_GRADE), "p") == MAX_GRADE  # the largest C int is still a grade
    assert parse_grade("+3.00", "p") == 3
    assert _refused(lambda: parse_grade(str(MAX_GRADE + 1), "f:2")) == (
        f"f:2: score '{MAX_GRADE + 1}' is not a valid grade; {GRADE_RULE}")
    assert _refused(lambda: parse_grade("x", "f:1")) == f"f:1: score 'x' is not a valid grade; {GRADE_RULE}"
    assert _refused(lambda: parse_grade("x", "f:1", header_hint=True)) == (
        f"f:1: score 'x' is not a valid grade; {GRADE_RULE}; "
        "a header row must name its columns (query-id, corpus-id, score)")


def test_only_the_first_row_can_be_a_header(tmp_path):
    qrels = tmp_path / "q.tsv"
    qrels.write_text(HEADER + HEADER + "q1\td1\t1\n")  # a second header is a bad row, not skipped
    assert _refused(lambda: list(read_qrels_tsv(qrels))) == (
        f"{qrels}:2: score 'score' is not a valid grade; {GRADE_RULE}")
    qrels.write_text(HEADER + "q1\td1\tx\n")  # after a header, a bad grade gets no header hint
    assert _refused(lambda: list(read_qrels_tsv(qrels))) == f"{qrels}:2: score 'x' is not a valid grade; {GRADE_RULE}"


def test_qrels_grades_are_read_from_the_last_column_as_written(tmp_path):
    qrels = tmp_path / "q.tsv"
    qrels.write_text(HEADER + "q1\td1\t1X\n")
    assert "score '1X' is not a valid grade" in _refused(lambda: list(read_qrels_tsv(qrels)))
    qrels.write_bytes((HEADER + "q1\td1\t2\r\nq1 0 d2 3\r\n").encode())
    assert list(read_qrels_tsv(qrels)) == [(2, "q1", "d1", 2), (3, "q1", "d2", 3)]


def test_empty_id_message_says_what_every_row_needs(tmp_path):
    qrels = tmp_path / "q.tsv"
    qrels.write_text(HEADER + "q1\t \t1\n")
    assert _refused(lambda: list(read_qrels_tsv(qrels))) == (
        f"{qrels}:2: empty corpus-id; every row needs a query-id, a corpus-id and a score")


@pytest.mark.parametrize(("n", "shown"), [(5, "a0, a1, a2, a3, a4"), (6, "a0, a1, a2, a3, a4 ...")])
def test_empty_items_warning_lists_five_ids_then_dots(caplog, n, shown):
    with caplog.at_level(logging.WARNING):
        warn_empty_items("c.jsonl", [f"a{i}" for i in range(n)])
        warn_empty_items("none.jsonl", [])
    assert [r.getMessage() for r in caplog.records] == [f"c.jsonl: {n} items have empty text (ids {shown})"]


def test_blank_lines_inside_a_beir_folder_lose_nothing(tmp_path):
    root = write_beir(tmp_path / "b", [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}],
                      [{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}],
                      {"test": [("q1", "d1", 1), ("q2", "d2", 1)]})
    for name in ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"):
        lines = (root / name).read_text().splitlines(keepends=True)
        (root / name).write_text("".join(lines[:1] + ["\n"] + lines[1:]))
    data = load_beir(root, "test")
    assert [d.id for d in data.corpus] == ["d1", "d2"] and [q.id for q in data.queries] == ["q1", "q2"]
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
