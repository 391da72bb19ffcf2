"""A tiny document model rendered to both Markdown and HTML.

Leaderboards are built once as blocks (headings, paragraphs, tables, images)
and rendered twice, so the Markdown files and the HTML page can never
disagree on a number. Links hold absolute paths and are made relative to
whichever file is being written; the HTML page can instead point at an
in-page anchor.

Markdown output is deterministic: the same blocks give the same bytes.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

__all__ = [
    "Block",
    "Bold",
    "Cell",
    "Code",
    "Details",
    "Heading",
    "Image",
    "Inline",
    "Link",
    "Para",
    "Table",
    "fmt_delta",
    "fmt_p",
    "fmt_score",
    "fmt_sort",
    "plain_text",
    "relative_link",
    "to_markdown",
]


@dataclass(frozen=True)
class Link:
    text: str
    target: Path
    anchor: str | None = None
    """In-page id the HTML page links to instead of ``target``."""
    fragment: str | None = None
    """``#fragment`` the Markdown link adds to ``target`` (a heading of the target page)."""


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Bold:
    text: str


Inline = Union[str, Link, Code, Bold]


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass(frozen=True)
class Para:
    parts: tuple[Inline, ...]


@dataclass(frozen=True)
class Cell:
    """One table cell; ``sort`` is the value the HTML page sorts by (None sorts last)."""

    content: Inline | tuple[Inline, ...] = ""
    sort: float | str | None = None
    bold: bool = False


@dataclass
class Table:
    columns: list[str]
    rows: list[list[Cell]]
    numeric: list[bool]
    """Right-aligned, numerically sorted columns."""
    table_id: str | None = None
    header_links: dict[int, Link] = field(default_factory=dict)
    """Column index -> link that replaces the plain header text."""
    export_omit: tuple[int, ...] = ()
    """Columns left out of the LaTeX export (links to files, which mean nothing on paper)."""


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


@dataclass(frozen=True)
class Details:
    """Blocks folded under a one-line summary (``<details>`` in Markdown and HTML)."""

    summary: str
    blocks: tuple["Block", ...]


Block = Union[Heading, Para, Table, Image, Details]


def fmt_score(value: float | None) -> str:
    """Scores are printed ×100 with two decimals (as in the terminal table)."""
    if value is None:
        return ""
    text = f"{100.0 * value:.2f}"
    return "0.00" if text == "-0.00" else text


def fmt_delta(value: float) -> str:
    """A signed ×100 difference; never ``-0.00``."""
    text = f"{100.0 * value:+.2f}"
    return "+0.00" if text == "-0.00" else text


def fmt_p(value: float) -> str:
    return f"{value:.4f}"


def fmt_sort(value: float | int | str) -> str:
    """A sort key or exported number at a fixed precision.

    ``repr`` of a computed float carries its last bits, which differ between machines
    (another BLAS or SIMD width sums in another order); six decimals do not.
    """
    if isinstance(value, str):
        return value
    text = f"{float(value):.6f}"
    return text[1:] if text == "-0.000000" else text


def plain_text(part: Inline | tuple[Inline, ...]) -> str:
    """The text of inline content without any markup (for CSV and LaTeX)."""
    if isinstance(part, tuple):
        return "".join(plain_text(p) for p in part)
    if isinstance(part, (Link, Code, Bold)):
        return part.text
    return part


def relative_link(target: Path, doc_dir: Path) -> str:
    """POSIX relative path from the folder of the document to ``target``."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(doc_dir))
    return Path(rel).as_posix()


def _escape_md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _inline_md(part: Inline | tuple[Inline, ...], doc_dir: Path) -> str:
    if isinstance(part, tuple):
        return "".join(_inline_md(p, doc_dir) for p in part)
    if isinstance(part, Link):
        fragment = f"#{part.fragment}" if part.fragment else ""
        return f"[{_escape_md(part.text)}]({relative_link(part.target, doc_dir)}{fragment})"
    if isinstance(part, Code):
        return f"`{part.text.replace('`', '')}`"
    if isinstance(part, Bold):
        return f"**{_escape_md(part.text)}**"
    return _escape_md(part)


def _table_md(table: Table, doc_dir: Path) -> str:
    header = []
    for i, name in enumerate(table.columns):
        link = table.header_links.get(i)
        header.append(_inline_md(link, doc_dir) if link else _escape_md(name))
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if num else ":---" for num in table.numeric) + "|",
    ]
    for row in table.rows:
        cells = []
        for cell in row:
            text = _inline_md(cell.content, doc_dir)
            cells.append(f"**{text}**" if cell.bold and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def to_markdown(blocks: Sequence[Block], doc_dir: Path) -> str:
    """Render blocks as GitHub-flavoured Markdown; links relative to ``doc_dir``."""
    out = []
    for block in blocks:
        if isinstance(block, Details):
            # GitHub renders Markdown inside <details> when blank lines surround it.
            inner = to_markdown(block.blocks, doc_dir).rstrip("\n")
            summary = html.escape(block.summary, quote=False)
            out.append(f"<details><summary>{summary}</summary>\n\n{inner}\n\n</details>")
        elif isinstance(block, Heading):
            out.append("#" * block.level + " " + block.text)
        elif isinstance(block, Para):
            out.append(_inline_md(block.parts, doc_dir))
        elif isinstance(block, Table):
            out.append(_table_md(block, doc_dir))
        elif isinstance(block, Image):
            out.append(f"![{_escape_md(block.alt)}]({relative_link(block.path, doc_dir)})")
        else:  # pragma: no cover - a programming error
            raise TypeError(f"unknown block {block!r}")
    return "\n\n".join(out) + "\n"
