"""Shared fixtures: small datasets written in the real BEIR layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _session_cache_dir(tmp_path_factory):
    """Tests never read or write the user's embedding cache (``~/.cache/vembed-bench``)."""
    if "VEMBED_CACHE_DIR" not in os.environ:
        os.environ["VEMBED_CACHE_DIR"] = str(tmp_path_factory.mktemp("vembed-cache"))


def write_beir(root: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, list[tuple]]) -> Path:
    """Write a BEIR folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv with a header."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(row) + "\n" for row in corpus))
    (root / "queries.jsonl").write_text("".join(json.dumps(row) + "\n" for row in queries))
    (root / "qrels").mkdir(exist_ok=True)
    for split, rows in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in rows]
        (root / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def tiny_beir(tmp_path: Path) -> Path:
    """Three documents, three queries; q3's only judgement is non-relevant."""
    return write_beir(
        tmp_path / "tiny",
        corpus=[
            {"_id": "d1", "title": "Cats", "text": "Cats purr and sleep all day."},
            {"_id": "d2", "title": "Rockets", "text": "Rockets burn fuel to reach orbit."},
            {"_id": "d3", "title": "Bread", "text": "Bread rises because yeast makes gas."},
        ],
        queries=[
            {"_id": "q1", "text": "why do cats purr"},
            {"_id": "q2", "text": "how do rockets reach space"},
            {"_id": "q3", "text": "unjudged question"},
        ],
        qrels={"test": [("q1", "d1", 1), ("q2", "d2", 2), ("q2", "d3", 0), ("q3", "d3", 0)]},
    )
