"""A qualitative retrieval grid: a few queries and their top results, as one PNG.

Numbers say how often a model is right; a grid shows *how* it is wrong
(near-duplicates, wrong colour, right object in the wrong pose). Each row is
one query followed by its top-k results, each framed green when relevant and
red when not. Text items are drawn as wrapped text on a white tile, so the
same grid works for image-to-image, text-to-image and image-to-text tasks.
The file goes beside the result (``<split>.grid.png``), where the leaderboard
picks it up.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from vembed_bench.data.types import Item, TaskData

TILE = 128
BORDER = 6
GREEN = (22, 160, 60)
RED = (210, 40, 40)
GREY = (90, 90, 90)


def save_grid(data: TaskData, indices: np.ndarray, path: str | Path, *, n_queries: int = 4,
              top_k: int = 5, seed: int = 0) -> Path:
    """Draw ``n_queries`` seeded queries with their top ``top_k`` results into ``path``."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(data.queries), size=min(n_queries, len(data.queries)), replace=False))
    corpus = data.corpus
    drawn: list[list[Tile | None]] = []
    for row in rows:
        query = data.queries[int(row)]
        relevant = {d for d, g in data.qrels.get(query.id, {}).items() if g > 0}
        cells: list[Tile | None] = [(query, GREY)]
        for position in indices[int(row), :top_k]:
            doc = corpus[int(position)] if position >= 0 else None
            cells.append(None if doc is None else (doc, GREEN if doc.id in relevant else RED))
        drawn.append(cells)
    return save_rows(drawn, path, columns=1 + top_k)


Tile = tuple[Item, Sequence[int]]
"""An item and the colour of its frame."""


def save_rows(rows: Sequence[Sequence[Tile | None]], path: str | Path, *, columns: int | None = None) -> Path:
    """Draw rows of framed tiles into a PNG at ``path``; ``None`` leaves a blank slot."""
    from PIL import Image

    from vembed_bench.report.files import write_bytes

    cols = columns or max((len(r) for r in rows), default=1)
    canvas = Image.new("RGB", (cols * (TILE + 2 * BORDER), max(len(rows), 1) * (TILE + 2 * BORDER)), "white")
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            if cell is not None:
                _paste(canvas, _tile(cell[0]), c, r, cell[1])
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())  # atomic: a reader never sees half a PNG


def _paste(canvas, tile, col: int, row: int, colour: Sequence[int]) -> None:
    from PIL import ImageDraw

    x, y = col * (TILE + 2 * BORDER), row * (TILE + 2 * BORDER)
    ImageDraw.Draw(canvas).rectangle([x, y, x + TILE + 2 * BORDER - 1, y + TILE + 2 * BORDER - 1],
                                     fill=tuple(colour))
    canvas.paste(tile, (x + BORDER, y + BORDER))


def _tile(item: Item):
    from PIL import Image, ImageDraw

    if item.image is not None:
        try:
            from vembed_bench.encoders.image_io import open_image

            image = open_image(item.image)
            image.thumbnail((TILE, TILE))
            tile = Image.new("RGB", (TILE, TILE), "white")
            tile.paste(image, ((TILE - image.width) // 2, (TILE - image.height) // 2))
            return tile
        except Exception:  # noqa: BLE001 - an unreadable image is drawn as its name
            pass
    tile = Image.new("RGB", (TILE, TILE), "white")
    text = " ".join(p for p in (item.title, item.text) if p) or (item.image.name if item.image else item.id)
    lines = textwrap.wrap(text, width=20)[:9]
    ImageDraw.Draw(tile).multiline_text((4, 4), "\n".join(lines), fill="black", spacing=2)
    return tile
