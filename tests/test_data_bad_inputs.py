"""Every loader refuses bad input with one line naming the file and line (or id/key), and keys
its fingerprints on everything that changes a vector.

The bad inputs are tables of (file contents, expected message fragment); each case asserts a
:class:`VembedError` whose message is one line and names the place. The good cases check the
loaded data against references built independently of the loaders: hand-written dicts,
pytrec_eval's own qrels parser, and plain ``json`` reads of the files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable

import pytest
from conftest import write_beir
from image_fixtures import write_karpathy, write_sop

from vembed_bench import filehash
from vembed_bench.data import load_task
from vembed_bench.data.beir import load_beir
from vembed_bench.data.cards import read_card
from vembed_bench.data.data_root import use_data_root
from vembed_bench.data.image_tasks import load_karpathy, load_sop
from vembed_bench.data.loading import data_fingerprint, items_fingerprint
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

HEADER = "query-id\tcorpus-id\tscore\n"
FF, E9, C3 = b"\xff", b"\xe9", b"\xc3"  # bytes that are not valid UTF-8 where they are placed
CORPUS = [{"_id": f"d{i}", "title": f"T{i}", "text": f"doc {i}"} for i in range(1, 4)]
QUERIES = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(1, 4)]


def refused(load: Callable[[], object], *places: str) -> str:
    """Run ``load``; it must raise one one-line VembedError that names every one of ``places``."""
    with pytest.raises(VembedError) as err:
        load()
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    for place in places:
        assert place in message, f"{place!r} not in {message!r}"
    return message


def beir(root: Path, *, corpus: bytes | None = None, queries: bytes | None = None,
         qrels: bytes | str | None = None) -> Path:
    """A valid BEIR folder, with any of its three files replaced by raw content."""
    write_beir(root, CORPUS, QUERIES, {"test": [("q1", "d1", 1), ("q2", "d2", 1)]})
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/test.tsv", qrels)):
        if content is not None:
            (root / name).write_bytes(content.encode() if isinstance(content, str) else content)
    return root


# --------------------------------------------------------------------------- qrels
BAD_UTF8_QRELS = HEADER.encode() + b"q1\td1\t1\nq2\td\xff2\t1\n"
QRELS_CASES = [
    # a header is recognised by its names only: a bad first row is an error, not a "header"
    ("q1\td1\thigh\nq2\td2\t1\n", "test.tsv:1: score 'high' is not a valid grade"),
    ("query-id\tcorpus-id\tscores\nq1\td1\t1\n", "test.tsv:1: score 'scores' is not a valid grade"),
    ("query-id\tcorpus-id\tscores\nq1\td1\t1\n", "a header row must name its columns"),
    ("q1\td1\t1\nquery-id\tcorpus-id\tscore\n", "test.tsv:2: score 'score' is not a valid grade"),
    # grades: whole numbers >= 0, nothing rounded, clipped or overflowing
    (HEADER + "q1\td1\t0.5\n", "test.tsv:2: score '0.5' is not a valid grade; grades must be whole numbers >= 0"),
    (HEADER + "q1\td1\t1.5\n", "test.tsv:2: score '1.5'"),
    (HEADER + "q1\td1\tinf\n", "test.tsv:2: score 'inf'"),
    (HEADER + "q1\td1\t-inf\n", "test.tsv:2: score '-inf'"),
    (HEADER + "q1\td1\tnan\n", "test.tsv:2: score 'nan'"),
    (HEADER + "q1\td1\t-1\n", "test.tsv:2: score '-1'"),
    (HEADER + "q1\td1\t1e400\n", "test.tsv:2: score '1e400'"),
    (HEADER + "q1\td1\tabc\n", "test.tsv:2: score 'abc'"),
    (HEADER + "q1\td1\t\n", "test.tsv:2: score ''"),
    (HEADER + "q1\td1\t2,0\n", "test.tsv:2: score '2,0'"),
    (HEADER + "q1\td1\t1_0\n", "test.tsv:2: score '1_0'"),
    (HEADER + "q1\td1\t\uff12\n", "test.tsv:2: score '\uff12'"),  # a full-width digit 2
    (HEADER + "q1\td1\t4294967296\n", "test.tsv:2: score '4294967296'"),
    (HEADER + "q2\td2\t1\nq1\td1\t0x1\n", "test.tsv:3: score '0x1'"),
    # one row per (query, document)
    (HEADER + "q1\td1\t1\nq2\td2\t1\nq1\td1\t2\n",
     "test.tsv:4: duplicate judgement of query-id 'q1', corpus-id 'd1' (first on line 2)"),
    ("q1 0 d1 1\nq1 0 d1 0\n", "test.tsv:2: duplicate judgement of query-id 'q1', corpus-id 'd1' (first on line 1)"),
    # ids and columns
    (HEADER + "\td1\t1\n", "test.tsv:2: empty query-id"),
    (HEADER + " \td1\t1\n", "test.tsv:2: empty query-id"),
    (HEADER + "q1\t\t1\n", "test.tsv:2: empty corpus-id"),
    (HEADER + "q1\td1\n", "test.tsv:2: expected 3 tab-separated columns"),
    (HEADER + "q1\t0\td1\t1\tx\n", "test.tsv:2: expected 3 tab-separated columns (query-id, corpus-id, score), found 5"),
    (HEADER + "q9\td1\t1\n", "test.tsv:2: unknown query-id 'q9'"),
    (HEADER + "q1\td9\t1\n", "test.tsv:2: unknown corpus-id 'd9'"),
    # text encoding: line and byte offset (computed from the bytes themselves)
    (BAD_UTF8_QRELS, f"test.tsv:3: invalid UTF-8 (byte 0xff at byte offset {BAD_UTF8_QRELS.index(FF)} "),
    (BAD_UTF8_QRELS, "re-encode the file as UTF-8"),
]


@pytest.mark.parametrize(("content", "fragment"), QRELS_CASES)
def test_bad_qrels_are_refused_naming_file_and_line(tmp_path, content, fragment):
    root = beir(tmp_path / "b", qrels=content)
    refused(lambda: load_beir(root, "test"), fragment)


# --------------------------------------------------------------------------- JSONL
def _jsonl(*rows: dict | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


LATIN1_CORPUS = _jsonl(CORPUS[0]) + b'{"_id": "d2", "text": "caf\xe9"}\n' + _jsonl(CORPUS[2])
BAD_UTF8_QUERIES = b'{"_id": "q1", "text": "\xc3("}\n' + _jsonl(*QUERIES[1:])
JSONL_CASES = [
    ("corpus", LATIN1_CORPUS,
     f"corpus.jsonl:2: invalid UTF-8 (byte 0xe9 at byte offset {LATIN1_CORPUS.index(E9)} "),
    ("corpus", LATIN1_CORPUS, "re-encode the file as UTF-8"),
    ("queries", BAD_UTF8_QUERIES, f"queries.jsonl:1: invalid UTF-8 (byte 0xc3 at byte offset {BAD_UTF8_QUERIES.index(C3)} "),
    ("corpus", _jsonl(CORPUS[0], {"_id": "", "text": "x"}, *CORPUS[1:]), "corpus.jsonl:2: field '_id' is empty"),
    ("corpus", _jsonl(CORPUS[0], {"_id": "  \t", "text": "x"}, *CORPUS[1:]), "corpus.jsonl:2: field '_id' is empty"),
    ("queries", _jsonl(*QUERIES, {"_id": None, "text": "x"}), "queries.jsonl:4: missing required field '_id'"),
    ("corpus", _jsonl(*CORPUS, {"_id": ["d4"], "text": "x"}), "corpus.jsonl:4: field '_id' must be a string or an integer"),
    ("corpus", _jsonl(*CORPUS, {"_id": True, "text": "x"}), "corpus.jsonl:4: field '_id' must be a string or an integer"),
    ("corpus", _jsonl(*CORPUS, {"_id": 4.5, "text": "x"}), "corpus.jsonl:4: field '_id' must be a string or an integer"),
    ("corpus", _jsonl(*CORPUS, {"_id": "d4", "text": ["a", "b"]}), "corpus.jsonl:4: field 'text' must be a string"),
    ("corpus", _jsonl(*CORPUS, {"_id": "d4", "title": {"x": 1}, "text": "x"}), "corpus.jsonl:4: field 'title' must be a string"),
    ("queries", _jsonl(*QUERIES, {"_id": "q4", "text": "x", "instruction": True}),
     "queries.jsonl:4: field 'instruction' must be a string"),
    ("corpus", _jsonl(*CORPUS, {"_id": "d4", "image": ["a.png"]}), "corpus.jsonl:4: field 'image' must be a string"),
    ("corpus", _jsonl(*CORPUS, "[1, 2]"), "corpus.jsonl:4: expected a JSON object, got list"),
    ("corpus", _jsonl(*CORPUS, '{"_id": "d4", "text": }'), "corpus.jsonl:4: invalid JSON"),
    ("corpus", _jsonl(*CORPUS, {"_id": "d2", "text": "again"}), "corpus.jsonl:4: duplicate _id 'd2' (first on line 2)"),
    ("corpus", _jsonl(*CORPUS, {"_id": "d4"}), "corpus.jsonl:4: missing required field 'text'"),
]


@pytest.mark.parametrize(("which", "content", "fragment"), JSONL_CASES)
def test_bad_jsonl_is_refused_naming_file_and_line(tmp_path, which, content, fragment):
    root = beir(tmp_path / "b", **{which: content})
    refused(lambda: load_beir(root, "test"), fragment)


# --------------------------------------------------------------------------- task card paths
def _card(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir(exist_ok=True)
    (folder / "c.yaml").write_text("name: c\n" + text)
    return folder / "c.yaml"


def _outside(tmp_path: Path) -> Path:
    """A BEIR folder beside (outside) the card folder and the data root, and links to it."""
    data = beir(tmp_path / "elsewhere")
    (tmp_path / "cards").mkdir(exist_ok=True)
    (tmp_path / "cards" / "link").symlink_to(data, target_is_directory=True)
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "root" / "link").symlink_to(data, target_is_directory=True)
    return data


CARD_CASES = [
    ("loader: beir\nparams: {path: ../elsewhere}\n",
     "params.path '../elsewhere' resolves outside the card's folder"),
    ("loader: beir\nparams: {path: link}\n", "params.path 'link' resolves outside the card's folder"),
    ("loader: beir\nparams: {path: 'link/../link'}\n", "params.path 'link/../link' resolves outside"),
    ("loader: beir\nparams: {path: '@package/../../elsewhere'}\n",
     "params.path '@package/../../elsewhere' resolves outside the vembed_bench package"),
    ("loader: beir_root\nparams: {dirname: ../elsewhere}\n",
     "params.dirname '../elsewhere' resolves outside the data root"),
    ("loader: beir_root\nparams: {dirname: link}\n", "params.dirname 'link' resolves outside the data root"),
    ("loader: sop\nparams: {dirname: ../elsewhere}\n", "params.dirname '../elsewhere' resolves outside"),
    ("loader: karpathy\nparams: {dataset: ../../elsewhere/x}\n",
     "params.dataset '../../elsewhere/x' must be a plain name"),
    ("loader: mmeb\nparams: {dataset: ../elsewhere}\n", "params.dataset '../elsewhere' must be a plain name"),
    ("loader: mmeb\nparams: {dataset: Toy, path: /tmp, image_dir: ../elsewhere}\n",
     "params.image_dir '../elsewhere' resolves outside the card's folder"),
    ("loader: mteb\nparams: {beir_path: ../elsewhere}\n",
     "params.beir_path '../elsewhere' resolves outside the card's folder"),
]


@pytest.mark.parametrize(("text", "fragment"), CARD_CASES)
def test_card_paths_are_confined(tmp_path, text, fragment):
    _outside(tmp_path)
    card = read_card(_card(tmp_path, text))
    with use_data_root(tmp_path / "root"):
        message = refused(lambda: load_task(card), fragment)
    assert str((tmp_path / "cards" / "c.yaml").resolve()) in message  # names the card file


def test_card_split_names_cannot_point_elsewhere(tmp_path):
    path = _card(tmp_path, "loader: beir\nparams: {path: x}\nsplits: ['../../elsewhere/qrels/test']\n")
    refused(lambda: read_card(path), "c.yaml", "key 'splits' has the wrong type or value")
    root = beir(tmp_path / "b")
    refused(lambda: load_beir(root, "../b/qrels/test"), "split '../b/qrels/test' must be a plain name")


def test_card_paths_written_explicitly_are_used_as_written(tmp_path, monkeypatch):
    data = _outside(tmp_path)
    monkeypatch.setenv("ELSEWHERE", str(data))
    inside = beir(tmp_path / "cards" / "inside")
    for value, expected in ((str(data), data), ("$ELSEWHERE", data), ("inside", inside)):
        card = read_card(_card(tmp_path, f"loader: beir\nparams: {{path: '{value}'}}\n"))
        assert load_task(card).root == expected.resolve()


# --------------------------------------------------------------------------- SOP
def _sop(tmp_path: Path, lines: list[str] | bytes) -> Callable[[], object]:
    folder = write_sop(tmp_path, [(1, 1, "bicycle"), (2, 1, "bicycle")])
    content = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode()
    (folder / "Ebay_test.txt").write_bytes(content)
    return lambda: load_sop(folder, "test")


SOP_HEAD = "image_id class_id super_class_id path"
SOP_A, SOP_B = "1 1 1 bicycle_final/111085122801_0.JPG", "2 1 1 bicycle_final/111085122801_1.JPG"
SOP_LATIN1 = f"{SOP_HEAD}\n{SOP_A}\n".encode() + b"2 1 1 bicycle_final/caf\xe9.JPG\n"
SOP_CASES = [
    (SOP_LATIN1, f"Ebay_test.txt:3: invalid UTF-8 (byte 0xe9 at byte offset {SOP_LATIN1.index(E9)} "),
    ([SOP_HEAD, SOP_A, SOP_B, "3 1 1 bicycle_final/111085122801_0.JPG"],
     "Ebay_test.txt:4: image 'bicycle_final/111085122801_0.JPG' is already listed on line 2"),
    ([SOP_HEAD, SOP_A, SOP_B.replace("2 1", "1 1", 1)], "Ebay_test.txt:3: duplicate image_id '1' (first on line 2)"),
    (["image_id class_id path", SOP_A], "Ebay_test.txt:1: expected the header"),
    (["", SOP_A, SOP_B], "Ebay_test.txt:2: expected the header"),
    ([SOP_HEAD, SOP_A, "2 1 bicycle_final/111085122801_1.JPG"], "Ebay_test.txt:3: expected 4 space-separated columns"),
    ([SOP_HEAD, SOP_A, "2 1 1 ../../../etc/hosts"], "Ebay_test.txt:3: image path '../../../etc/hosts' is outside"),
    ([SOP_HEAD], "Ebay_test.txt: no images listed"),
]


@pytest.mark.parametrize(("lines", "fragment"), SOP_CASES)
def test_bad_sop_files_are_refused(tmp_path, lines, fragment):
    refused(_sop(tmp_path, lines), fragment)


# --------------------------------------------------------------------------- Karpathy JSON
def _karpathy(tmp_path: Path, edit: Callable[[dict], object] | bytes) -> Callable[[], object]:
    folder = write_karpathy(tmp_path, [("a.jpg", "test", ["A cat."]), ("b.jpg", "test", ["A dog."])])
    path = folder / "dataset_flickr30k.json"
    if isinstance(edit, bytes):
        path.write_bytes(edit)
    else:
        raw = json.loads(path.read_text())
        edit(raw)
        path.write_text(json.dumps(raw))
    return lambda: load_karpathy(path, "test")


KARPATHY_LATIN1 = b'{"images": [\n{"filename": "a.jpg", "split": "test",\n "sentences": [{"raw": "caf\xe9"}]}]}\n'
KARPATHY_CASES = [
    (KARPATHY_LATIN1, f"dataset_flickr30k.json:3: invalid UTF-8 (byte 0xe9 at byte offset {KARPATHY_LATIN1.index(E9)} "),
    (b'{"images": [\n{"filename": "a.jpg",, "split": "test"}]}', "dataset_flickr30k.json:2: invalid JSON"),
    (lambda raw: raw["images"].insert(1, "b.jpg"), "dataset_flickr30k.json: images[1] must be an object with a 'split'"),
    (lambda raw: raw["images"][1].pop("split"), "images[1] must be an object with a 'split' string"),
    (lambda raw: raw["images"][0].update(sentences="A cat."), "images[0].sentences must be a list"),
    (lambda raw: raw["images"][0].update(filename="  "), "images[0] has no 'filename'"),
    (lambda raw: raw["images"][1]["sentences"][0].update(raw=" "), "images[1].sentences[0] has no 'raw' caption"),
    (lambda raw: raw["images"][1].update(filename="a.jpg"), "images[1] repeats filename 'a.jpg'"),
    (lambda raw: raw["images"][1].update(filename="../../x.jpg"), "images[1]"),
]


@pytest.mark.parametrize(("edit", "fragment"), KARPATHY_CASES)
def test_bad_karpathy_json_is_refused(tmp_path, edit, fragment):
    refused(_karpathy(tmp_path, edit), "dataset_flickr30k.json", fragment)


# --------------------------------------------------------------------------- MMEB parquet
def _mmeb(tmp_path: Path, rows: list[dict] | bytes | object) -> Callable[[], object]:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from vembed_bench.data.mmeb import load_mmeb

    folder = tmp_path / "MMEB-eval" / "Toy"
    folder.mkdir(parents=True)
    (tmp_path / "MMEB-eval" / "eval_images").mkdir()
    path = folder / "test-00000-of-00001.parquet"
    if isinstance(rows, bytes):
        path.write_bytes(rows)
    elif isinstance(rows, list):
        pd.DataFrame(rows).to_parquet(path)
    else:  # a column of strings that are not valid UTF-8, as a broken writer would leave
        raw = pa.array([b"ok", b"bad\xff"], type=pa.binary())
        text = pa.Array.from_buffers(pa.string(), 2, raw.buffers())
        lists = pa.array([["a"], ["b"]])
        pq.write_table(pa.table({"qry_text": text, "qry_img_path": ["", ""], "tgt_text": lists,
                                 "tgt_img_path": pa.array([[""], [""]])}), path)
    return lambda: load_mmeb(folder, tmp_path / "MMEB-eval" / "eval_images", name="toy")


MMEB_ROW = {"qry_text": "a", "qry_img_path": "", "tgt_text": ["a", "b"], "tgt_img_path": ["", ""]}
MMEB_CASES = [
    ([{**MMEB_ROW, "tgt_text": "ab", "tgt_img_path": None}], "row 1: tgt_text must be a list"),
    (b"PAR1 not really parquet", "cannot read this parquet file"),
    ("invalid-utf8", "row 2 column qry_text: invalid UTF-8 (byte 0xff at byte offset 3 of the value)"),
    ([MMEB_ROW, {**MMEB_ROW, "tgt_img_path": [""]}], "row 2: tgt_text and tgt_img_path must be non-empty lists"),
    ([{**MMEB_ROW, "qry_img_path": "../../x.png"}], "row 1: image path '../../x.png' is outside"),
    ([{"qry_text": "a", "tgt_text": ["a"]}], "missing MMEB columns qry_img_path, tgt_img_path"),
]


@pytest.mark.parametrize(("rows", "fragment"), MMEB_CASES)
def test_bad_mmeb_parquet_is_refused(tmp_path, rows, fragment):
    refused(_mmeb(tmp_path, rows), "test-00000-of-00001.parquet", fragment)


# --------------------------------------------------------------------------- mteb_local (the cross-check reader)
MTEB_CASES = [
    ("qrels", HEADER + "q1\td1\t0.5\n", "test.tsv:2: score '0.5'"),
    ("qrels", HEADER + "q1\td1\t1\nq1\td1\t1\n", "test.tsv:3: duplicate judgement of (q1, d1)"),
    ("qrels", HEADER + "q1\td9\t1\n", "unknown corpus-id 'd9'"),
    ("qrels", HEADER + "q1\t\t1\n", "test.tsv:2: expected query-id, corpus-id and score"),
    ("corpus", LATIN1_CORPUS, f"corpus.jsonl:2: invalid UTF-8 (byte 0xe9 at byte offset {LATIN1_CORPUS.index(E9)})"),
    ("queries", _jsonl({"_id": " ", "text": "x"}), "queries.jsonl:1: every row needs a non-blank '_id'"),
    ("corpus", _jsonl(*CORPUS, CORPUS[0]), "corpus.jsonl:4: duplicate _id 'd1'"),
]


@pytest.mark.parametrize(("which", "content", "fragment"), MTEB_CASES)
def test_bad_files_are_refused_by_the_mteb_cross_check_too(tmp_path, which, content, fragment):
    pytest.importorskip("datasets")
    from vembed_bench.integrations.mteb_local import beir_as_mteb_task

    root = beir(tmp_path / "b", **{which: content})
    refused(lambda: beir_as_mteb_task(root, name="x"), fragment)


def test_at_least_forty_bad_inputs():
    cases = QRELS_CASES + JSONL_CASES + CARD_CASES + SOP_CASES + KARPATHY_CASES + MMEB_CASES + MTEB_CASES
    assert len(cases) >= 40


# --------------------------------------------------------------------------- good inputs load exactly
TEN = [(f"q{i}", f"d{i % 3 + 1}", 1 + i % 2) for i in range(10)]


def _ten_queries(tmp_path: Path, qrels: str) -> Path:
    return beir(tmp_path / "ten", queries=_jsonl(*({"_id": f"q{i}", "text": f"query {i}"} for i in range(10))),
                qrels=qrels)


@pytest.mark.parametrize("header", [
    "", "query-id\tcorpus-id\tscore\n", "QUERY-ID\tCORPUS-ID\tSCORE\n", "query_id\tcorpus_id\trelevance\n",
    "qid\tdocid\tlabel\n", "qid\tdoc-id\tgrade\n", "queryid\tdoc_id\tScore\n", "qid 0 docid relevance\n",
])
def test_every_judgement_is_kept_with_or_without_a_header(tmp_path, header):
    """The reported bug: a header-less file lost its first judgement (9 of 10 queries scored)."""
    body = "".join(f"{q}\t{d}\t{g}\n" for q, d, g in TEN)
    data = load_beir(_ten_queries(tmp_path, header + body), "test")
    expected = {}
    for q, d, g in TEN:  # built by hand from the rows, not by the loader
        expected.setdefault(q, {})[d] = g
    assert data.qrels == expected and len(data.queries) == 10


def test_trec_qrels_match_pytrec_eval_own_parser(tmp_path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    lines = [f"{q} 0 {d} {g}" for q, d, g in TEN] + ["q1 0 d3 0", "q2 0 d1 0", "qz 0 d1 0"]
    qrels_text = "\n".join(lines) + "\n"
    queries = _jsonl(*({"_id": f"q{i}", "text": f"query {i}"} for i in range(10)), {"_id": "qz", "text": "x"})
    data = load_beir(beir(tmp_path / "trec", queries=queries, qrels=qrels_text), "test")
    reference = pytrec_eval.parse_qrel(qrels_text.splitlines())
    assert data.qrels == {q: d for q, d in reference.items() if any(g > 0 for g in d.values())}
    assert data.skipped_queries == 1  # qz: judged, but only non-relevant


@pytest.mark.parametrize(("written", "grade"), [("2", 2), ("2.0", 2), ("2.", 2), ("02", 2), (" 3 ", 3), ("0", 0)])
def test_whole_number_grades_are_read_as_written(tmp_path, written, grade):
    data = load_beir(beir(tmp_path / "g", qrels=f"{HEADER}q1\td1\t1\nq1\td2\t{written}\n"), "test")
    assert data.qrels == {"q1": {"d1": 1, "d2": grade}}


def test_bom_and_crlf_files_load_like_plain_ones(tmp_path):
    plain = load_beir(beir(tmp_path / "plain"), "test")
    corpus = b"\xef\xbb\xbf" + _jsonl(*CORPUS).replace(b"\n", b"\r\n")
    qrels = ("\ufeff" + HEADER + "q1\td1\t1\nq2\td2\t1\n").replace("\n", "\r\n")
    other = load_beir(beir(tmp_path / "bom", corpus=corpus, qrels=qrels), "test")
    assert (other.queries, other.corpus, other.qrels) == (plain.queries, plain.corpus, plain.qrels)


def test_loaded_items_match_an_independent_read_of_the_files(tmp_path):
    """Good input gives exactly what the files say (fields read here with plain json)."""
    (tmp_path / "m" / "img").mkdir(parents=True)
    (tmp_path / "m" / "img" / "a.png").write_bytes(b"\x89PNG fake")
    corpus = [{"_id": "d1", "title": "T", "text": "x"}, {"_id": 7, "text": 1984},
              {"_id": "d3", "image": "img/a.png", "text": "", "extra": [1]}, {"_id": "d4", "title": None, "text": "y"}]
    queries = [{"_id": "q1", "text": "find", "instruction": "Retrieve"}, {"_id": "q2", "text": "x"}]
    root = beir(tmp_path / "m", corpus=_jsonl(*corpus), queries=_jsonl(*queries),
                qrels=HEADER + "q1\t7\t1\nq1\td3\t0\nq2\td1\t2\n")
    data = load_beir(root, "test")
    assert data.corpus == [
        Item(id="d1", text="x", title="T"), Item(id="7", text="1984"),
        Item(id="d3", image=(root / "img" / "a.png").resolve()), Item(id="d4", text="y"),
    ]
    assert data.queries == [Item(id="q1", text="find", instruction="Retrieve"), Item(id="q2", text="x")]
    assert data.qrels == {"q1": {"7": 1, "d3": 0}, "q2": {"d1": 2}}


def test_items_with_nothing_to_encode_are_allowed_with_one_warning_per_file(tmp_path, caplog):
    corpus = CORPUS + [{"_id": f"e{i}", "text": "", "title": " "} for i in range(7)]
    queries = QUERIES + [{"_id": "blank", "text": ""}]
    root = beir(tmp_path / "e", corpus=_jsonl(*corpus), queries=_jsonl(*queries))
    with caplog.at_level(logging.WARNING):
        data = load_beir(root, "test")
    assert len(data.corpus) == 10
    warnings = [r.getMessage() for r in caplog.records if "empty text" in r.getMessage()]
    assert warnings == [f"{root / 'corpus.jsonl'}: 7 items have empty text (ids e0, e1, e2, e3, e4 ...)",
                        f"{root / 'queries.jsonl'}: 1 items have empty text (ids blank)"]


# --------------------------------------------------------------------------- fingerprints
def _fingerprints(root: Path) -> tuple[str, str, str]:
    data = load_beir(root, "test")
    return items_fingerprint(data.queries), items_fingerprint(data.corpus), data_fingerprint(data)


def _image_beir(root: Path) -> Path:
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "img" / "a.png").write_bytes(b"A" * 64)
    corpus = [{"_id": "d1", "title": "T1", "text": "doc 1"}, {"_id": "d2", "image": "img/a.png"}]
    queries = [{"_id": "q1", "text": "query 1", "instruction": "Find"}, {"_id": "q2", "text": "query 2"}]
    return beir(root, corpus=_jsonl(*corpus), queries=_jsonl(*queries), qrels=HEADER + "q1\td1\t1\nq2\td2\t1\n")


@pytest.mark.parametrize(("file", "old", "new", "role"), [
    ("corpus.jsonl", '"title": "T1"', '"title": "T1 changed"', 1),
    ("corpus.jsonl", '"text": "doc 1"', '"text": "doc 1 changed"', 1),
    ("queries.jsonl", '"instruction": "Find"', '"instruction": "Find me"', 0),
    ("queries.jsonl", '"text": "query 2"', '"text": "query two"', 0),
])
def test_every_field_the_encoder_sees_changes_the_fingerprints(tmp_path, file, old, new, role):
    root = _image_beir(tmp_path / "f")
    before = _fingerprints(root)
    text = (root / file).read_text()
    assert old in text
    (root / file).write_text(text.replace(old, new))
    after = _fingerprints(root)
    assert after[role] != before[role] and after[2] != before[2]
    assert after[1 - role] == before[1 - role]  # the other side's cache stays valid


def test_qrels_change_the_data_fingerprint_only(tmp_path):
    root = _image_beir(tmp_path / "q")
    before = _fingerprints(root)
    (root / "qrels" / "test.tsv").write_text(HEADER + "q1\td1\t2\nq2\td2\t1\n")
    after = _fingerprints(root)
    assert after[:2] == before[:2] and after[2] != before[2]


def test_an_image_replaced_by_another_of_the_same_size_and_mtime_changes_the_fingerprints(tmp_path):
    root = _image_beir(tmp_path / "i")
    image = root / "img" / "a.png"
    before = _fingerprints(root)
    assert _fingerprints(root) == before  # stable when nothing changed
    stat = image.stat()
    image.write_bytes(b"B" * 64)  # same size ...
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old mtime put back
    assert image.stat().st_size == stat.st_size and image.stat().st_mtime_ns == stat.st_mtime_ns
    after = _fingerprints(root)
    assert after[0] == before[0] and after[1] != before[1] and after[2] != before[2]
    image.write_bytes(b"A" * 64)
    assert _fingerprints(root) == before  # content, not history, is the key


def _memo_entry(path: Path, sha: str, hashed_ns: int, **changes: int) -> dict:
    st = path.stat()
    entry = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "ino": st.st_ino,
             "sha256": sha, "hashed_ns": hashed_ns}
    return {os.path.abspath(path): {**entry, **changes}}


def test_the_digest_memo_skips_unchanged_files_and_distrusts_any_signature_change(tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(b"pixels")
    true_sha = hashlib.sha256(b"pixels").hexdigest()
    st = image.stat()
    settled = max(st.st_mtime_ns, st.st_ctime_ns) + filehash.RACY_NS + 1
    memo = tmp_path / "memo.json"

    def digest_with(entry: dict) -> str:
        memo.write_text(json.dumps(entry))
        filehash._LOADED.pop(memo, None)  # as a new process would: read the memo file afresh
        return filehash.file_digests([image], memo=memo)[0]

    # A trusted entry is used without reading the file: the planted digest comes back.
    assert digest_with(_memo_entry(image, "planted", settled)) == "planted"
    # Any difference in size, mtime, ctime (what os.utime cannot restore) or inode: read again.
    for field in ("size", "mtime_ns", "ctime_ns", "ino"):
        entry = _memo_entry(image, "planted", settled)
        entry[os.path.abspath(image)][field] += 1
        assert digest_with(entry) == true_sha, field
    # Racily clean: hashed within RACY_NS of the last change, a same-tick rewrite could hide.
    assert digest_with(_memo_entry(image, "planted", settled - 2)) == true_sha
    # The fresh digest is written back for the next process.
    assert json.loads(memo.read_text())[os.path.abspath(image)]["sha256"] == true_sha


def test_the_digest_memo_follows_a_symlink_to_its_current_target(tmp_path):
    (tmp_path / "a.png").write_bytes(b"AAAA")
    (tmp_path / "b.png").write_bytes(b"BBBB")
    link = tmp_path / "link.png"
    link.symlink_to(tmp_path / "a.png")
    memo = tmp_path / "memo.json"
    st = link.stat()
    settled = max(st.st_mtime_ns, st.st_ctime_ns) + filehash.RACY_NS + 1
    memo.write_text(json.dumps(_memo_entry(link, "planted-for-a", settled)))
    assert filehash.file_digests([link], memo=memo) == ["planted-for-a"]  # trusted while it leads to a.png
    link.unlink()
    link.symlink_to(tmp_path / "b.png")  # same size, the memo key (the link's path) unchanged
    assert filehash.file_digests([link], memo=memo) == [hashlib.sha256(b"BBBB").hexdigest()]


def test_an_unreadable_image_is_a_one_line_error(tmp_path):
    refused(lambda: items_fingerprint([Item(id="x", image=tmp_path / "gone.png")]), "gone.png")


def test_a_card_that_is_not_utf8_is_a_one_line_error(tmp_path):
    path = _card(tmp_path, "loader: beir\n")
    path.write_bytes(b"name: c\nloader: beir\ndescription: caf\xe9\n")
    refused(lambda: read_card(path), f"c.yaml:3: invalid UTF-8 (byte 0xe9 at byte offset {path.read_bytes().index(E9)} ")
