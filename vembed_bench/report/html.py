"""The HTML report: one static, self-contained page.

The page needs no server and no network: CSS and the sorting script are
inline and every image (plots, retrieval grids) is embedded as a base64
``data:`` URI, so the single file can be mailed or attached to a CI run.
Tables sort when a header is clicked (numbers high to low first, text A to
Z; a second click reverses; empty cells stay last).

The page also reads ``#sort=TABLE_ID:COLUMN[,...]`` from its URL and clicks
those headers in order after loading: a link can share a sorted view, and a
headless browser's ``--dump-dom`` or screenshot shows the sorted table
without any browser driver.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from vembed_bench.report.document import (
    Block,
    Bold,
    Cell,
    Code,
    Details,
    Heading,
    Image,
    Inline,
    Link,
    Para,
    Table,
    fmt_sort,
    relative_link,
)

__all__ = ["render_html"]

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  margin: 0; color: #1b1f24; background: #fff; }
header { background: #24292f; color: #fff; padding: 10px 24px; }
header a { color: #c9d1d9; margin-right: 14px; text-decoration: none; }
header strong { margin-right: 24px; }
main { padding: 8px 24px 48px; max-width: 1600px; }
section { border-top: 1px solid #d0d7de; margin-top: 24px; }
h1 { font-size: 22px; margin: 18px 0 8px; } h2 { font-size: 17px; margin: 16px 0 6px; }
p { margin: 6px 0 10px; max-width: 1100px; }
code { background: #f0f2f4; padding: 0 3px; border-radius: 3px; font-size: 12px; }
.scroll { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; }
th, td.num { white-space: nowrap; }
td { max-width: 60em; }
th { background: #f6f8fa; position: sticky; top: 0; cursor: pointer; user-select: none; }
th:hover { background: #eaeef2; }
th[aria-sort]::after { margin-left: 4px; color: #0969da; }
th[aria-sort="descending"]::after { content: "\\25BC"; }
th[aria-sort="ascending"]::after { content: "\\25B2"; }
th a.hl { text-decoration: none; font-size: 11px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f9fafb; }
tbody tr:hover { background: #fff8c5; }
details { margin: 4px 0 14px; }
summary { cursor: pointer; color: #0969da; }
figure { margin: 8px 0 14px; }
figcaption { font-size: 12px; color: #57606a; }
img { max-width: 100%; height: auto; border: 1px solid #d0d7de; display: block; }
"""

_JS = """
(function () {
  function key(cell, numeric) {
    if (!cell) return null;
    var v = cell.hasAttribute('data-sort') ? cell.getAttribute('data-sort')
                                           : cell.textContent.trim();
    if (v === '') return null;
    if (numeric) { var x = parseFloat(v); return isNaN(x) ? null : x; }
    return v.toLowerCase();
  }
  function sortBy(th) {
    var table = th.closest('table');
    var col = Array.prototype.indexOf.call(th.parentNode.children, th);
    var numeric = th.getAttribute('data-type') === 'num';
    var current = th.getAttribute('aria-sort');
    var desc = current ? current === 'ascending' : numeric;
    Array.prototype.forEach.call(th.parentNode.children, function (h) {
      h.removeAttribute('aria-sort');
    });
    th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var order = new Map(rows.map(function (r, i) { return [r, i]; }));
    rows.sort(function (a, b) {
      var x = key(a.cells[col], numeric), y = key(b.cells[col], numeric);
      if (x === null || y === null) {
        if (x === y) return order.get(a) - order.get(b);
        return x === null ? 1 : -1;
      }
      if (x < y) return desc ? 1 : -1;
      if (x > y) return desc ? -1 : 1;
      return order.get(a) - order.get(b);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.addEventListener('DOMContentLoaded', function () {
    document.querySelectorAll('table.sortable th').forEach(function (th) {
      th.addEventListener('click', function (e) { if (!e.target.closest('a')) sortBy(th); });
      th.addEventListener('keydown', function (e) {
        if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sortBy(th); }
      });
    });
    var m = /^#sort=(.+)$/.exec(window.location.hash);
    if (m) {
      decodeURIComponent(m[1]).split(',').forEach(function (spec) {
        var parts = spec.split(':');
        var table = document.querySelector('table[id="' + parts[0] + '"]');
        var th = table && table.tHead.rows[0].cells[parseInt(parts[1], 10)];
        if (th) th.click();
      });
      document.body.setAttribute('data-sorted', m[1]);
    }
  });
})();
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


class _Renderer:
    def __init__(self, page: Path) -> None:
        self.page_dir = Path(page).parent
        self.table_count = 0

    def inline(self, part: Inline | tuple[Inline, ...]) -> str:
        if isinstance(part, tuple):
            return "".join(self.inline(p) for p in part)
        if isinstance(part, Link):
            href = f"#{part.anchor}" if part.anchor else relative_link(part.target, self.page_dir)
            return f'<a href="{_esc(href)}">{_esc(part.text)}</a>'
        if isinstance(part, Code):
            return f"<code>{_esc(part.text)}</code>"
        if isinstance(part, Bold):
            return f"<strong>{_esc(part.text)}</strong>"
        return _esc(part)

    def cell(self, cell: Cell, numeric: bool) -> str:
        attrs = ' class="num"' if numeric else ""
        if cell.sort is not None:  # fixed precision: the same bytes on every machine
            attrs += f' data-sort="{_esc(fmt_sort(cell.sort))}"'
        text = self.inline(cell.content)
        if cell.bold and text:
            text = f"<strong>{text}</strong>"
        return f"<td{attrs}>{text}</td>"

    def table(self, table: Table) -> str:
        self.table_count += 1
        table_id = table.table_id or f"table-{self.table_count}"
        head = []
        for i, (name, numeric) in enumerate(zip(table.columns, table.numeric)):
            kind = "num" if numeric else "text"
            cls = ' class="num"' if numeric else ""
            link = table.header_links.get(i)
            extra = ""
            if link is not None:
                href = (
                    f"#{link.anchor}" if link.anchor else relative_link(link.target, self.page_dir)
                )
                extra = f' <a class="hl" href="{_esc(href)}" title="open">&#8599;</a>'
            head.append(
                f'<th{cls} data-type="{kind}" tabindex="0" scope="col">{_esc(name)}{extra}</th>'
            )
        body = [
            "<tr>" + "".join(self.cell(c, n) for c, n in zip(row, table.numeric)) + "</tr>"
            for row in table.rows
        ]
        return (
            f'<div class="scroll"><table class="sortable" id="{_esc(table_id)}">'
            f"<thead><tr>{''.join(head)}</tr></thead>\n<tbody>\n"
            + "\n".join(body)
            + "\n</tbody></table></div>"
        )

    def image(self, image: Image) -> str:
        data = base64.b64encode(Path(image.path).read_bytes()).decode("ascii")
        return (
            f'<figure><img alt="{_esc(image.alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(image.alt)}</figcaption></figure>"
        )

    def block(self, block: Block) -> str:
        if isinstance(block, Heading):
            anchor = f' id="{_esc(block.anchor)}"' if block.anchor else ""
            return f"<h{block.level}{anchor}>{_esc(block.text)}</h{block.level}>"
        if isinstance(block, Para):
            return f"<p>{self.inline(block.parts)}</p>"
        if isinstance(block, Table):
            return self.table(block)
        if isinstance(block, Image):
            return self.image(block)
        if isinstance(block, Details):
            inner = "\n".join(self.block(b) for b in block.blocks)
            return f"<details><summary>{_esc(block.summary)}</summary>\n{inner}\n</details>"
        raise TypeError(f"unknown block {block!r}")  # pragma: no cover


def render_html(
    sections: Sequence[Sequence[Block]],
    page: Path,
    *,
    title: str = "vembed-bench leaderboard",
    nav: Sequence[tuple[str, str]] = (),
) -> str:
    """The whole page as a string; ``page`` is where it will be written (for relative links).

    ``sections`` are lists of blocks (the overview, each task, each run);
    ``nav`` is ``(text, anchor)`` pairs for the top bar.
    """
    renderer = _Renderer(page)
    links = "".join(f'<a href="#{_esc(anchor)}">{_esc(text)}</a>' for text, anchor in nav)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head>",
        f"<body><header><strong>{_esc(title)}</strong>{links}</header><main>",
    ]
    for section in sections:
        parts.append("<section>")
        parts.extend(renderer.block(block) for block in section)
        parts.append("</section>")
    parts.append(f"</main><script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
