"""Matryoshka evaluation: one encode, one Result per size, equal to evaluating a model
that itself returns the truncated, renormalised vectors (computed here with numpy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from tests.conftest import write_beir
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.evaluation import evaluate
from vembed_bench.options import EvalOptions
from vembed_bench.report.console import dims_table

FULL = 16


class FixedEncoder:
    """Random but fixed vectors per item id; ``keep`` truncates them itself (the reference)."""

    def __init__(self, keep: int | None = None) -> None:
        self.name = "fixed"
        self.keep = keep
        self.calls = 0

    def _vectors(self, items: Sequence[Item]) -> np.ndarray:
        self.calls += 1
        rows = []
        for item in items:
            seed = int.from_bytes(item.id.encode()[:8].ljust(8, b"\0"), "little") % (2**32)
            # q<i> and d<i> share a base vector, so each query sits near its document
            v = 0.2 * np.random.default_rng(seed).normal(size=FULL)
            v = v + np.random.default_rng(int(item.id[1:])).normal(size=FULL)
            rows.append(v)
        x = np.asarray(rows, dtype=np.float32)
        if self.keep:
            x = x[:, : self.keep]
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._vectors(items)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._vectors(items)

    def fingerprint(self) -> str:
        return f"fixed-{self.keep}"

    def describe(self) -> dict[str, Any]:
        return {"type": "fixed", "name": self.name}


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(40)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(20)]
    qrels = {"test": [(f"q{i}", f"d{i}", 1) for i in range(20)] + [(f"q{i}", f"d{i + 20}", 1) for i in range(5)]}
    return write_beir(tmp_path / "syn", corpus, queries, qrels)


def test_every_size_from_one_encode_matches_truncating_model(beir: Path, tmp_path: Path) -> None:
    model = FixedEncoder()
    runs = evaluate(beir, model, dims="16,8,2", cache="off", results_dir=tmp_path / "res",
                    show_progress=False, k_values=[1, 10])
    results = runs.results
    assert model.calls == 2  # queries once, documents once, for all three sizes
    assert [r.embedding_dim for r in results] == [16, 8, 2]  # 16 is the full size: one plain result
    assert results[0].model_info.get("matryoshka_dim") is None and results[0].settings_key == ""
    for result in results:
        dim = result.embedding_dim
        reference = evaluate(beir, FixedEncoder(keep=dim), cache="off", results_dir=None,
                             show_progress=False, k_values=[1, 10])
        assert result.scores == pytest.approx(reference.scores, abs=1e-9)
        assert result.model_info["fingerprint"] == model.fingerprint()
        name = "test.json" if dim == FULL else f"test.dim{dim}.json"
        files = list((tmp_path / "res").rglob(name))
        assert len(files) == 1
        assert json.loads(files[0].read_text())["model_info"].get("matryoshka_dim") == (None if dim == FULL else dim)
    assert results[0].scores != results[2].scores  # 2 dims really lose information here
    assert len(list((tmp_path / "res").rglob("*.json"))) == 3  # sizes never overwrite each other
    table = dims_table(results)
    assert [c.header for c in table.columns][:2] == ["dim", "ndcg@10"] and table.row_count == 3


def test_dims_option_and_errors(beir: Path) -> None:
    assert EvalOptions(dims="1536, 1024,1536,256").dims == (1536, 1024, 256)
    assert EvalOptions().dims is None
    for bad in ("a,b", "0,8", ","):
        with pytest.raises(VembedError, match="--dims"):
            EvalOptions(dims=bad)
    runs = evaluate(beir, FixedEncoder(), dims="32", cache="off", results_dir=None, show_progress=False)
    assert [o.status for o in runs] == ["computed", "failed"]  # the full size still runs
    assert "larger than the model's 16 dimensions" in runs.failed[0].error
