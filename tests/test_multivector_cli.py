"""Late interaction through `vembed-bench eval`: a tiny random ColBERT-style folder is detected,
searched with MaxSim (exact, or FAISS token candidates + exact rerank), the result file says which,
and the ragged token matrices go through the embedding cache (a re-run loads no model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from conftest import write_beir
from vembed_bench.cache import CachePolicy, EmbeddingCache
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

WORDS = ("why do cats purr how rockets reach space bread rise yeast makes gas burn fuel orbit sleep all day "
         "dogs bark loud stars shine night").split()


@pytest.fixture(scope="module")
def colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("colbert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + sorted(set(WORDS))
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    save_file({"weight": torch.randn(12, 32)}, str(folder / "colbert_linear.safetensors"))
    return folder


@pytest.fixture
def task(tmp_path: Path) -> Path:
    """Twelve documents of different lengths, six queries with one or two relevant each."""
    rng = np.random.default_rng(0)
    corpus = [{"_id": f"d{i}", "title": "", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 9))))}
              for i in range(12)]
    queries = [{"_id": f"q{i}", "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))} for i in range(6)]
    qrels = {"test": [(f"q{i}", f"d{(2 * i) % 12}", 1) for i in range(6)] + [("q0", "d5", 1), ("q3", "d9", 2)]}
    return write_beir(tmp_path / "toy", corpus, queries, qrels)


@pytest.fixture
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _eval(task: Path, model: Path, out: Path, *extra: str):
    from typer.testing import CliRunner

    from vembed_bench.cli import app
    from vembed_bench.results import load_result

    res = CliRunner().invoke(app, ["eval", "--task", str(task), "--model", str(model), "--results-dir", str(out),
                                   "--cache-dir", str(out.parent / "cache"), "--device", "cpu", "--k", "1,3,10",
                                   "--no-progress", *extra])
    assert res.exit_code == 0, res.output
    files = list(out.rglob("test*.json"))  # test.json, or test.maxsim-faiss<depth>.json
    assert len(files) == 1
    return load_result(files[0]), " ".join(res.output.split())


def test_cli_runs_colbert_exact_then_hits_the_cache(colbert_dir: Path, task: Path, tmp_path: Path,
                                                    one_thread: None) -> None:
    first, output = _eval(task, colbert_dir, tmp_path / "r1")
    assert first.search_info["backend"] == "maxsim" and first.search_info["search"] == "exact"
    assert first.search_info["exact"] is True and first.search_info["multi_vector"] is True
    assert first.cache == {"policy": "use", "hits": 0, "misses": 2}
    assert first.embedding_dim == 12 and first.model_info["multi_vector"] is True
    assert "maxsim/exact" in output

    second, _ = _eval(task, colbert_dir, tmp_path / "r2")
    assert second.cache == {"policy": "use", "hits": 2, "misses": 0}
    assert "load_model" not in second.timings  # manifest hit: the weights were never loaded
    assert second.scores == first.scores
    for name, values in first.per_query.per_query.items():
        assert list(second.per_query.per_query[name]) == list(values)

    # The cache holds exactly what the encoder gives: ragged (tokens, 12) matrices, one per item.
    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.encoders.colbert import ColBERTEncoder

    data = load_task(resolve_card(str(task)), "test")
    options = EncoderOptions(show_progress=False, device="cpu")
    fresh = ColBERTEncoder(colbert_dir, options).encode_documents_multi(data.corpus)
    store = EmbeddingCache(tmp_path / "cache" / "embeddings")
    entries = [p.parent.name for p in (tmp_path / "cache" / "embeddings").rglob("offsets.npy")]
    assert len(entries) == 2
    cached = [store.load_multi(key) for key in entries]
    corpus = next(c for c in cached if len(c) == len(data.corpus))
    assert len({m.shape[0] for m in corpus}) > 1  # really ragged
    for got, want in zip(corpus, fresh):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6)

    # Scores by hand from the cached matrices: MaxSim, then each query's first relevant rank.
    queries = next(c for c in cached if len(c) == len(data.queries))
    for qi, qid in enumerate(data.query_ids()):
        sims = [float((queries[qi] @ d.T).max(axis=1).sum()) for d in corpus]
        order = sorted(range(len(corpus)), key=lambda j: (-sims[j], j))
        relevant = {d for d, g in data.qrels[qid].items() if g > 0}
        first_hit = next(r for r, j in enumerate(order, start=1) if data.corpus[j].id in relevant)
        assert first.per_query.per_query["mrr@10"][qi] == pytest.approx(1 / first_hit if first_hit <= 10 else 0)


def test_faiss_rerank_records_depth_and_equals_exact_when_deep(colbert_dir: Path, task: Path, tmp_path: Path,
                                                               one_thread: None) -> None:
    exact, _ = _eval(task, colbert_dir, tmp_path / "exact")
    shallow, output = _eval(task, colbert_dir, tmp_path / "shallow", "--maxsim", "faiss", "--candidate-depth", "1")
    assert shallow.search_info["search"] == "faiss" and shallow.search_info["exact"] is False
    assert shallow.search_info["candidate_depth"] == 1
    assert "maxsim/faiss depth 1" in output
    assert shallow.cache["hits"] == 2  # same token matrices as the exact run

    n_tokens = int(sum(np.load(p)[-1] for p in (tmp_path / "cache").rglob("offsets.npy")))
    deep, _ = _eval(task, colbert_dir, tmp_path / "deep", "--maxsim", "faiss", "--candidate-depth", str(n_tokens))
    assert deep.search_info["candidate_depth"] == n_tokens
    assert deep.scores == exact.scores
    for name, values in exact.per_query.per_query.items():
        assert list(deep.per_query.per_query[name]) == list(values)


def test_model_type_colbert_and_errors(colbert_dir: Path, task: Path, tmp_path: Path) -> None:
    from vembed_bench.evaluation import evaluate
    from vembed_bench.encoders.loader import is_multivector_model

    plain = tmp_path / "plain"
    plain.mkdir()
    for f in colbert_dir.iterdir():
        if f.name != "colbert_linear.safetensors":
            (plain / f.name).write_bytes(f.read_bytes())
    assert is_multivector_model(str(colbert_dir), {})
    assert not is_multivector_model(str(plain), {})  # a plain BERT stays a dense model
    assert is_multivector_model(str(plain), {"model_type": "colbert"})

    class Dense:
        def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
            return np.ones((len(items), 4), np.float32)

        encode_documents = encode_queries

    with pytest.raises(VembedError, match="multi-vector"):
        evaluate(task, Dense(), maxsim="faiss", results_dir=None, cache="off", show_progress=False)
    with pytest.raises(VembedError, match="--maxsim 'plaid' is not one of"):
        evaluate(task, str(colbert_dir), maxsim="plaid", results_dir=None, cache="off", show_progress=False)


def test_ragged_cache_resumes_from_shards_and_respects_policy(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    items = [Item(f"i{n}", f"text {n}") for n in range(5)]
    mats = {it.id: rng.normal(size=(int(rng.integers(1, 6)), 3)).astype(np.float32) for it in items}
    calls: list[list[str]] = []

    def compute(batch: Sequence[Item]) -> list[np.ndarray]:
        calls.append([it.id for it in batch])
        if fail and batch[0].id == "i2":
            raise KeyboardInterrupt
        return [mats[it.id] for it in batch]

    store = EmbeddingCache(tmp_path, shard_size=2)
    fail = True
    with pytest.raises(KeyboardInterrupt):
        store.get_or_compute_multi("ab" * 32, items, compute)
    assert not store.contains_multi("ab" * 32)
    fail = False
    calls.clear()
    got = store.get_or_compute_multi("ab" * 32, items, compute)
    assert calls == [["i2", "i3"], ["i4"]]  # the first shard came from disk
    assert [g.shape for g in got] == [mats[it.id].shape for it in items]
    for g, it in zip(got, items):
        np.testing.assert_array_equal(g, mats[it.id])
    assert not list((tmp_path / "ab").rglob("shard-*"))
    calls.clear()
    again = EmbeddingCache(tmp_path, shard_size=2)
    loaded = again.get_or_compute_multi("ab" * 32, items, compute)
    assert calls == [] and again.hits == 1 and again.misses == 0
    assert all(np.array_equal(a, b) for a, b in zip(loaded, got))
    refresh = EmbeddingCache(tmp_path, CachePolicy.REFRESH, shard_size=2)
    refresh.get_or_compute_multi("ab" * 32, items, compute)
    assert len(calls) == 3 and refresh.misses == 1
    off = EmbeddingCache(tmp_path / "off", CachePolicy.OFF)
    off.get_or_compute_multi("cd" * 32, items, compute)
    assert not (tmp_path / "off").exists()
    with pytest.raises(VembedError, match="one \\(tokens, dim\\) matrix per item"):
        EmbeddingCache(tmp_path / "bad").get_or_compute_multi("ef" * 32, items, lambda b: [mats["i0"]])
