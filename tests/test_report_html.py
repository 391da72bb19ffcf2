"""The HTML report: self-contained, and its tables render and sort in a real (headless) Chromium.

The page sorts on header clicks; for testing it also clicks the headers named
in ``#sort=TABLE:COL,...`` after loading, so ``chromium --dump-dom`` returns
the DOM as a user would see it after those clicks. Skipped when no Chromium
is installed (Debian: ``apt-get install -y --no-install-recommends chromium``).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import REPO

from vembed_bench.report.build import write_leaderboards
from vembed_bench.report.plots import matplotlib_available

FIXTURES = REPO / "tests" / "data" / "results"
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no headless Chromium (apt-get install -y --no-install-recommends chromium)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html")
    shutil.copytree(FIXTURES, root / "results")
    write_leaderboards([root / "results"], root / "out", plots=matplotlib_available(), html=True)
    return root / "out" / "report.html"


class Tables(HTMLParser):
    """Rows of every table by id: per cell its data-sort value (or text); plus header aria-sort."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[tuple[str, str | None]]] = {}
        self.body_attrs: dict[str, str | None] = {}
        self._table = self._cell = None
        self._in_head = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body_attrs = attrs
        elif tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table], self.headers[self._table] = [], []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tbody":
            self._in_head = False
        elif tag == "tr" and self._table and not self._in_head:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = {
                "sort": attrs.get("data-sort"),
                "aria": attrs.get("aria-sort"),
                "text": "",
                "tag": tag,
            }

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            cell, self._cell = self._cell, None
            if cell["tag"] == "th":
                self.headers[self._table].append((cell["text"].strip(), cell["aria"]))
            else:
                self.tables[self._table][-1].append(
                    cell["sort"] if cell["sort"] is not None else cell["text"].strip()
                )
        elif tag == "table":
            self._table = None


def parse(text: str) -> Tables:
    parser = Tables()
    parser.feed(text)
    return parser


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def column(page: Tables, table: str, index: int) -> list[str]:
    return [row[index] for row in page.tables[table]]


def numbers(values: list[str]) -> list[float]:
    return [float(v) for v in values if v != ""]


def test_page_is_self_contained(report):
    text = report.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), (
        "the page must not load anything from a network"
    )
    assert "<link" not in text and "<script src" not in text
    images = re.findall(r'<img alt="[^"]*" src="([^"]{0,30})', text)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert len(images) == 1 + (5 if matplotlib_available() else 0)  # the retrieval grid (+ plots)
    page = parse(text)
    faq = page.tables["board-faq_en-test"]
    assert [row[1] for row in faq][:2] == [
        "text-small-ft",
        "text-base",
    ]  # rank order before any click
    assert len(page.tables["overview-table"]) == 8


def test_sort_keys_are_written_at_a_fixed_precision(report):
    """``repr`` of a computed float carries last bits that differ between machines; every
    numeric sort key has exactly six decimals, so a fresh checkout rewrites the same bytes."""
    text = report.read_text()
    keys = re.findall(r'<td class="num" data-sort="([^"]*)"', text)
    assert len(keys) > 100
    assert all(re.fullmatch(r"-?\d+\.\d{6}", key) for key in keys), [
        k for k in keys if not re.fullmatch(r"-?\d+\.\d{6}", k)
    ][:5]
    # The metric definitions are written once, as the last section, and every task links there.
    assert text.count('id="metric-definitions"') == 1
    assert text.rindex("<section>") < text.index('id="metric-definitions"')
    assert text.count('href="#metric-definitions"') >= 3
    # The full metric table of a task is folded under its headline table.
    assert re.search(r"<details><summary>All \d+ metrics</summary>\n<div class=\"scroll\">"
                     r"<table class=\"sortable\" id=\"board-faq_en-test-all\">", text)


@needs_chromium
def test_tables_render_and_sort_in_chromium(report, tmp_path):
    url = report.as_uri()
    first = chromium(tmp_path, "--dump-dom", f"{url}#sort=board-faq_en-test:6,overview-table:2")
    assert first.returncode == 0, first.stderr[-2000:]
    page = parse(first.stdout)
    assert page.body_attrs.get("data-sorted"), "the page script did not run"
    recall1 = numbers(column(page, "board-faq_en-test", 6))
    assert len(recall1) == 7 and recall1 == sorted(recall1, reverse=True)
    assert page.headers["board-faq_en-test"][6] == ("recall@1", "descending")
    docs = column(page, "overview-table", 2)  # a column with empty cells: they stay last
    filled = numbers(docs)
    assert filled == sorted(filled, reverse=True) and docs[len(filled) :] == [""] * (
        len(docs) - len(filled)
    )

    second = chromium(
        tmp_path,
        "--dump-dom",
        f"{url}#sort=board-faq_en-test:6,board-faq_en-test:6,overview-table:0",
    )
    page = parse(second.stdout)
    recall1 = numbers(column(page, "board-faq_en-test", 6))
    assert recall1 == sorted(recall1) and page.headers["board-faq_en-test"][6][1] == "ascending"
    models = column(page, "overview-table", 0)
    assert models == sorted(models, key=str.lower) and len(models) == 8


@needs_chromium
def test_screenshot_shows_a_rendered_page(report, tmp_path):
    shot = tmp_path / "report.png"
    out = chromium(
        tmp_path,
        "--hide-scrollbars",
        "--window-size=1280,2400",
        f"--screenshot={shot}",
        f"{report.as_uri()}#sort=overview-table:3",
    )
    assert out.returncode == 0 and shot.is_file(), out.stderr[-2000:]
    header = shot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2400)
    # A blank page compresses to a few kB; rendered tables, text and images do not.
    assert shot.stat().st_size > 40_000
