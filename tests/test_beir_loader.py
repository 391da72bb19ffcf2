"""The BEIR loader and task cards: real layout, and one-line errors for every kind of bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from conftest import write_beir
from vembed_bench.data import load_task, resolve_card
from vembed_bench.data.beir import load_beir
from vembed_bench.data.cards import read_card
from vembed_bench.data.loading import data_fingerprint, sample_queries
from vembed_bench.errors import VembedError


def test_loads_real_layout_and_skips_queries_without_relevant_docs(tiny_beir, caplog):
    with caplog.at_level(logging.WARNING):
        data = load_beir(tiny_beir, "test")
    assert [q.id for q in data.queries] == ["q1", "q2"]
    assert data.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert data.skipped_queries == 1
    assert "skipped 1 of 3 queries" in caplog.text
    assert data.corpus[1].title == "Rockets"


def _error(tmp_path: Path, corpus=None, queries=None, qrels=None, raw: dict | None = None) -> str:
    root = write_beir(
        tmp_path / "bad",
        corpus or [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}],
        queries or [{"_id": "q1", "text": "x"}],
        qrels or {"test": [("q1", "d1", 1)]},
    )
    for name, text in (raw or {}).items():
        (root / name).write_text(text)
    with pytest.raises(VembedError) as err:
        load_beir(root, "test")
    message = str(err.value)
    assert "\n" not in message
    return message


def test_malformed_jsonl_names_file_and_line(tmp_path):
    msg = _error(tmp_path, raw={"corpus.jsonl": '{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": \n'})
    assert "corpus.jsonl:2: invalid JSON" in msg


def test_missing_id_field(tmp_path):
    msg = _error(tmp_path, queries=[{"_id": "q1", "text": "x"}, {"text": "no id"}])
    assert "queries.jsonl:2: missing required field '_id'" in msg


def test_missing_text_field(tmp_path):
    msg = _error(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2"}])
    assert "corpus.jsonl:2: missing required field 'text'" in msg


def test_duplicate_ids(tmp_path):
    msg = _error(tmp_path, corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}, {"_id": "d1", "text": "c"}])
    assert "corpus.jsonl:3: duplicate _id 'd1' (first on line 1)" in msg


def test_qrels_unknown_query_and_document(tmp_path):
    assert "test.tsv:2: unknown query-id 'q9'" in _error(tmp_path, qrels={"test": [("q9", "d1", 1)]})
    assert "test.tsv:2: unknown corpus-id 'd9'" in _error(tmp_path / "b", qrels={"test": [("q1", "d9", 1)]})


def test_qrels_bad_score_and_columns(tmp_path):
    assert "test.tsv:2: score 'high'" in _error(tmp_path, qrels={"test": [("q1", "d1", "high")]})
    msg = _error(tmp_path / "b", raw={"qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\n"})
    assert "test.tsv:2: expected 3 tab-separated columns" in msg


def test_empty_corpus(tmp_path):
    assert "the corpus is empty" in _error(tmp_path, raw={"corpus.jsonl": ""})


def test_no_relevant_query_at_all(tmp_path):
    assert "no query has a relevant document" in _error(tmp_path, qrels={"test": [("q1", "d1", 0)]})


def test_missing_split_lists_available(tmp_path, tiny_beir):
    with pytest.raises(VembedError, match="available splits: test"):
        load_beir(tiny_beir, "dev")


def test_images_resolve_inside_root_and_refuse_escapes(tmp_path):
    root = tmp_path / "img"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"png")
    (tmp_path / "secret.png").write_bytes(b"png")
    write_beir(root, [{"_id": "d1", "image": "images/a.png"}], [{"_id": "q1", "text": "x"}],
               {"test": [("q1", "d1", 1)]})
    data = load_beir(root, "test")
    assert data.corpus[0].image == (root / "images" / "a.png").resolve()
    assert data.corpus[0].modality == "image"

    write_beir(root, [{"_id": "d1", "image": "../secret.png"}], [{"_id": "q1", "text": "x"}], {"test": [("q1", "d1", 1)]})
    with pytest.raises(VembedError, match=r"corpus.jsonl:1: image path '../secret.png' is outside the dataset root"):
        load_beir(root, "test")
    write_beir(root, [{"_id": "d1", "image": str(tmp_path / "secret.png")}], [{"_id": "q1", "text": "x"}], {"test": [("q1", "d1", 1)]})
    with pytest.raises(VembedError, match="outside the dataset root"):
        load_beir(root, "test")
    (root / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    write_beir(root, [{"_id": "d1", "image": "images/link.png"}], [{"_id": "q1", "text": "x"}], {"test": [("q1", "d1", 1)]})
    with pytest.raises(VembedError, match="outside the dataset root"):
        load_beir(root, "test")
    write_beir(root, [{"_id": "d1", "image": "images/missing.png"}], [{"_id": "q1", "text": "x"}], {"test": [("q1", "d1", 1)]})
    with pytest.raises(VembedError, match="image 'images/missing.png' not found"):
        load_beir(root, "test")


def test_instruction_field_is_kept(tmp_path):
    root = write_beir(tmp_path / "i", [{"_id": "d1", "text": "a"}],
                      [{"_id": "q1", "text": "x", "instruction": "Find the answer"}], {"test": [("q1", "d1", 1)]})
    assert load_beir(root, "test").queries[0].instruction == "Find the answer"


def test_resolve_card_by_folder_name_and_path(tiny_beir, tmp_path):
    card = resolve_card(str(tiny_beir))
    assert card.loader == "beir" and card.splits == ["test"]
    card_path = tmp_path / "mine.yaml"
    card_path.write_text(f"name: mine\nloader: beir\nparams: {{path: {tiny_beir.name}}}\nk_values: [1, 2]\n")
    (tmp_path / tiny_beir.name).exists()
    card = resolve_card(str(card_path))
    assert card.name == "mine" and card.k_values == [1, 2]
    assert len(load_task(card).queries) == 2  # relative path resolved against the card's folder
    assert resolve_card("python_faq").loader == "beir"


def test_unknown_task_and_bad_cards(tmp_path):
    with pytest.raises(VembedError, match="unknown task 'nope'; known tasks: .*python_faq"):
        resolve_card("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nloader: beir\nsplitz: [test]\n")
    with pytest.raises(VembedError, match="bad.yaml: unknown key 'splitz'"):
        read_card(bad)
    bad.write_text("name: x\nloader: beir\nk_values: ten\n")
    with pytest.raises(VembedError, match="key 'k_values' has the wrong type"):
        read_card(bad)
    bad.write_text("name: x\nloader: [\n")
    with pytest.raises(VembedError, match=r"bad.yaml:\d+: invalid YAML"):
        read_card(bad)


def test_limit_is_seeded_and_changes_the_fingerprint(tmp_path):
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(50)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(50)]
    root = write_beir(tmp_path / "big", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(50)]})
    data = load_beir(root, "test")
    a, b, c = sample_queries(data, 10, 0), sample_queries(data, 10, 0), sample_queries(data, 10, 1)
    assert [q.id for q in a.queries] == [q.id for q in b.queries]
    assert [q.id for q in a.queries] != [q.id for q in c.queries]
    assert set(a.qrels) == {q.id for q in a.queries} and len(a.queries) == 10
    assert data_fingerprint(a) == data_fingerprint(b) != data_fingerprint(c) != data_fingerprint(data)


# --- what load_beir returns, field by field (mutation-testing gaps) ---------------------------


def test_returned_task_data_fields(tiny_beir):
    data = load_beir(tiny_beir)  # the default split is "test"
    assert (data.name, data.split, data.exclude_self, data.root) == ("tiny", "test", False, tiny_beir.resolve())
    assert data.meta == {"files": [str(tiny_beir / "corpus.jsonl"), str(tiny_beir / "queries.jsonl"),
                                   str(tiny_beir / "qrels" / "test.tsv")]}
    named = load_beir(tiny_beir, "test", name="custom", exclude_self=True)
    assert (named.name, named.exclude_self) == ("custom", True)


def test_skipped_queries_warning_names_the_qrels_file(tiny_beir, caplog):
    with caplog.at_level(logging.WARNING):
        load_beir(tiny_beir, "test")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tiny_beir / 'qrels' / 'test.tsv'}: skipped 1 of 3 queries with no relevant documents (all grades <= 0)"]


def test_folder_and_file_messages(tmp_path, tiny_beir):
    def message(*args) -> str:
        with pytest.raises(VembedError) as err:
            load_beir(*args)
        return str(err.value)

    assert message(tmp_path / "nowhere", "test") == (
        f"dataset folder {tmp_path / 'nowhere'} does not exist; pass a folder holding corpus.jsonl, "
        "queries.jsonl and qrels/<split>.tsv")
    assert message(tiny_beir, "../test") == (
        f"{tiny_beir}: split '../test' must be a plain name, without '/', '\\' or '..'")
    (tiny_beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert message(tiny_beir, "train") == f"{tiny_beir / 'qrels' / 'train.tsv'} not found; available splits: dev, test"
    for split in ("dev", "test"):
        (tiny_beir / "qrels" / f"{split}.tsv").unlink()
    assert message(tiny_beir, "test") == f"{tiny_beir / 'qrels' / 'test.tsv'} not found; available splits: none"
    (tiny_beir / "queries.jsonl").unlink()
    assert message(tiny_beir, "test") == (
        f"{tiny_beir / 'queries.jsonl'} not found; a BEIR folder needs corpus.jsonl and queries.jsonl")


def test_query_images_resolve_against_the_root_and_are_checked(tmp_path):
    root = tmp_path / "qi"
    (root / "img").mkdir(parents=True)
    (root / "img" / "q.png").write_bytes(b"png")
    write_beir(root, [{"_id": "d1", "text": "a"}], [{"_id": "q1", "image": "img/q.png"}], {"test": [("q1", "d1", 1)]})
    assert load_beir(root, "test").queries[0].image == (root / "img" / "q.png").resolve()
    write_beir(root, [{"_id": "d1", "text": "a"}], [{"_id": "q1", "image": "img/gone.png"}], {"test": [("q1", "d1", 1)]})
    with pytest.raises(VembedError, match=r"queries.jsonl:1: image 'img/gone.png' not found"):
        load_beir(root, "test")
    assert load_beir(root, "test", check_images=False).queries[0].image == (root / "img" / "gone.png").resolve()


def test_a_title_alone_is_something_to_encode(tmp_path, caplog):
    root = write_beir(tmp_path / "t", [{"_id": "d1", "title": "Only a title"}, {"_id": "d2", "text": "b"}],
                      [{"_id": "q1", "text": "x"}], {"test": [("q1", "d1", 1)]})
    with caplog.at_level(logging.WARNING):
        data = load_beir(root, "test")
    assert data.corpus[0].title == "Only a title" and data.corpus[0].text == ""
    assert "empty text" not in caplog.text


def test_unknown_qrels_ids_say_what_to_fix(tmp_path):
    assert _error(tmp_path, qrels={"test": [("q9", "d1", 1)]}) == (
        f"{tmp_path / 'bad' / 'qrels' / 'test.tsv'}:2: unknown query-id 'q9' (not in queries.jsonl); "
        "fix the qrels or add the query")
    assert _error(tmp_path / "b", qrels={"test": [("q1", "d9", 1)]}) == (
        f"{tmp_path / 'b' / 'bad' / 'qrels' / 'test.tsv'}:2: unknown corpus-id 'd9' (not in corpus.jsonl); "
        "fix the qrels or add the document")
