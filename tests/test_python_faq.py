"""Checks of the embedded python_faq dataset (BEIR layout) and of its builder.

The structural checks run everywhere, on the committed files. Where the Debian
package python3.11-doc is installed, two more checks run: the builder must
reproduce the committed files byte for byte, and every committed answer must
render the same words as the HTML page that Sphinx built from the same sources.
The HTML check is independent of the builder's own cleaning code.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "vembed_bench" / "datasets" / "python_faq"
DOC_HTML = Path("/usr/share/doc/python3.11/html")
FAQ_SRC = DOC_HTML / "_sources" / "faq"
DATA_FILES = ["corpus.jsonl", "queries.jsonl", "qrels/train.tsv", "qrels/test.tsv"]


def _jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        row = json.loads(line)
        assert isinstance(row, dict), f"{path.name}:{number} is not a JSON object"
        rows.append(row)
    return rows


def _qrels(split: str) -> list[tuple[str, str, str]]:
    lines = (DATASET / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "query-id\tcorpus-id\tscore"
    rows = [tuple(line.split("\t")) for line in lines[1:]]
    assert all(len(row) == 3 for row in rows)
    return rows  # type: ignore[return-value]


@pytest.fixture(scope="module")
def data() -> dict:
    corpus = _jsonl(DATASET / "corpus.jsonl")
    queries = _jsonl(DATASET / "queries.jsonl")
    return {
        "corpus": corpus,
        "queries": queries,
        "docs": {row["_id"]: row for row in corpus},
        "texts": {row["_id"]: row["text"] for row in queries},
        "train": _qrels("train"),
        "test": _qrels("test"),
    }


# --------------------------------------------------------------------------- structure


def test_files_and_licence_present() -> None:
    for name in [*DATA_FILES, "README.md", "LICENSE"]:
        assert (DATASET / name).is_file(), name
    licence = (DATASET / "LICENSE").read_text(encoding="utf-8")
    assert "PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2" in licence
    assert "Python Software Foundation" in licence


def test_rows_have_beir_fields_and_unique_ids(data: dict) -> None:
    for row in data["corpus"]:
        assert set(row) == {"_id", "title", "text", "metadata"}
        assert row["title"] == ""  # the page title would be the same for a whole page: kept as metadata
        assert isinstance(row["text"], str) and row["text"].strip()
        assert row["metadata"]["page"].endswith("FAQ")
    for row in data["queries"]:
        assert set(row) == {"_id", "text"}
        assert isinstance(row["text"], str) and row["text"].strip()
    for rows in (data["corpus"], data["queries"]):
        ids = [row["_id"] for row in rows]
        assert len(ids) == len(set(ids))
    assert not set(data["docs"]) & set(data["texts"]), "query and doc ids must differ"
    questions = Counter(text.casefold() for text in data["texts"].values())
    assert max(questions.values()) == 1, "a repeated question could leak across the split"


def test_qrels_reference_existing_ids_and_split_is_disjoint(data: dict) -> None:
    split_queries = {}
    for split in ("train", "test"):
        rows = data[split]
        assert {score for _, _, score in rows} == {"1"}
        assert len(rows) == len(set(rows))
        for qid, did, _ in rows:
            assert qid in data["texts"], qid
            assert did in data["docs"], did
        split_queries[split] = {qid for qid, _, _ in rows}
    train, test = split_queries["train"], split_queries["test"]
    assert not train & test
    assert train | test == set(data["texts"]), "every query needs a relevant doc in a split"
    judged_docs = {did for split in ("train", "test") for _, did, _ in data[split]}
    assert judged_docs == set(data["docs"]), "every answer belongs to some question"


def test_split_is_about_half_within_each_faq_page(data: dict) -> None:
    page = {qid: qid.split("-")[1] for qid in data["texts"]}
    train = {qid for qid, _, _ in data["train"]}
    per_page: dict[str, list[bool]] = {}
    for qid in data["texts"]:
        per_page.setdefault(page[qid], []).append(qid in train)
    for name, flags in per_page.items():
        assert abs(2 * sum(flags) - len(flags)) <= 1, name  # off by at most one
    assert abs(2 * len(train) - len(data["texts"])) <= 2


def test_counts_and_lengths_are_plausible(data: dict) -> None:
    assert 150 <= len(data["queries"]) <= 250
    assert len(data["queries"]) <= len(data["corpus"]) <= len(data["queries"]) + 5
    lengths = [len(row["text"]) for row in data["corpus"]]
    assert max(lengths) <= 2000
    assert 400 <= sum(lengths) / len(lengths) <= 1200
    assert sum(text.endswith("?") for text in data["texts"].values()) >= 0.95 * len(data["texts"])


MARKUP = [
    (re.compile(r":[A-Za-z]+(?::[A-Za-z]+)?:`"), "role"),
    (re.compile(r"``"), "inline literal"),
    (re.compile(r"`[^`]*`_"), "hyperlink reference"),
    (re.compile(r"<https?://[^>]*>`"), "hyperlink target"),
    (re.compile(r"(?:^|\s)\.\. [\w-]+::"), "directive"),
    (re.compile(r"(?:^|\s)\.\. _[\w-]+:"), "link target"),
    (re.compile(r"#\s*doctest:"), "doctest flag"),
    (re.compile(r"\s{2,}|\n"), "uncollapsed whitespace"),
]


def test_no_leftover_rest_markup(data: dict) -> None:
    texts = [row["text"] for row in data["corpus"]] + list(data["texts"].values())
    texts += [row["metadata"]["page"] for row in data["corpus"]]
    for text in texts:
        for pattern, what in MARKUP:
            assert not pattern.search(text), f"{what} left in: {text[:80]!r}"


# --------------------------------------------------------------------------- against the source


needs_source = pytest.mark.skipif(
    not FAQ_SRC.is_dir(), reason="python3.11-doc not installed (apt-get install python3.11-doc)"
)


@needs_source
def test_builder_reproduces_committed_files(tmp_path: Path) -> None:
    from vembed_bench.prepare.python_faq import build

    stats = build(FAQ_SRC, tmp_path, seed=0)
    for name in DATA_FILES:
        assert (tmp_path / name).read_bytes() == (DATASET / name).read_bytes(), name
    assert stats["queries"] == stats["train_queries"] + stats["test_queries"]

    other = build(FAQ_SRC, tmp_path / "seed1", seed=1)
    assert other["queries"] == stats["queries"]
    train0 = (tmp_path / "qrels" / "train.tsv").read_bytes()
    assert (tmp_path / "seed1" / "qrels" / "train.tsv").read_bytes() != train0, "seed unused"


class _LeafSections(HTMLParser):
    """(heading, body text) of every <section> without subsections in a Sphinx page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = []
        self.leaves: list[tuple[str, str]] = []
        self.in_heading = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "section":
            if self.stack:
                self.stack[-1]["parent"] = True
            self.stack.append({"head": [], "body": [], "parent": False})
        elif re.fullmatch(r"h[1-6]", tag) and self.stack:
            self.in_heading += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            section = self.stack.pop()
            if not section["parent"]:
                self.leaves.append(("".join(section["head"]), "".join(section["body"])))
        elif re.fullmatch(r"h[1-6]", tag) and self.in_heading:
            self.in_heading -= 1

    def handle_data(self, data: str) -> None:
        if self.stack:
            self.stack[-1]["head" if self.in_heading else "body"].append(data)


# Sphinx "smartquotes" typography, undone to compare headings with the ASCII sources.
_SMART = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                        "\u2026": "...", "\u2013": "--", "\u2014": "---", "\u00b6": None})


def _heading(text: str) -> str:
    return " ".join(text.translate(_SMART).split())


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _rendered_prefix(ours: list[str], html: list[str]) -> int:
    """How many HTML words ``ours`` reproduces in order; -1 if ours has other words.

    Ours may add numbers only: "1)" list enumerators that HTML draws as <ol> markup.
    """
    j = 0
    for word in ours:
        if j < len(html) and word == html[j]:
            j += 1
        elif not word.isdigit():
            return -1
    return j


@pytest.mark.skipif(not (DOC_HTML / "faq").is_dir(), reason="python3.11-doc not installed")
def test_answers_match_the_rendered_html(data: dict) -> None:
    pages = {}
    for page in (DOC_HTML / "faq").glob("*.html"):
        parser = _LeafSections()
        parser.feed(page.read_text(encoding="utf-8"))
        pages[page.stem] = parser.leaves
    questions_of: dict[str, list[str]] = {}
    for split in ("train", "test"):
        for qid, did, _ in data[split]:
            questions_of.setdefault(did, []).append(data["texts"][qid])

    complete = 0
    for did, doc in data["docs"].items():
        page = did.rsplit("-", 1)[0]
        (question,) = set(questions_of[did])
        bodies = [body for head, body in pages[page] if _heading(head) == question]
        assert len(bodies) == 1, f"{did}: no single HTML section titled {question!r}"
        html_words = _words(bodies[0])
        covered = _rendered_prefix(_words(doc["text"]), html_words)
        assert covered >= 0, f"{did}: words that the HTML page does not show"
        if covered == len(html_words):
            complete += 1
        else:  # truncated: a prefix of the section that stops near the length limit
            assert len(doc["text"]) > 1000, f"{did}: answer incomplete"
            assert covered >= len(html_words) // 3, did
    assert complete >= 0.85 * len(data["docs"])
