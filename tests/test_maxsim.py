"""Multi-vector MaxSim search against a brute-force loop, and a ColBERT-style encoder
on a tiny random BERT against a hand-written forward pass."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import pytest

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions
from vembed_bench.search.maxsim import exact_scores, maxsim_search


def _unit(rng: np.random.Generator, n: int, d: int = 8) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _data(seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    docs = [_unit(rng, int(n)) for n in rng.integers(1, 12, size=40)]
    queries = [_unit(rng, int(n)) for n in rng.integers(1, 6, size=7)]
    return queries, docs


def _brute(queries, docs) -> np.ndarray:
    return np.array([[sum(max(float(q_tok @ d_tok) for d_tok in d) for q_tok in q) for d in docs]
                     for q in queries])


def _ranking(row: np.ndarray, k: int, allowed=None) -> list[int]:
    ids = [i for i in range(len(row)) if allowed is None or i in allowed]
    return sorted(ids, key=lambda i: (-row[i], i))[:k]


@pytest.mark.parametrize("block_tokens", [5, 64, 1 << 18])  # many blocks, some, one
def test_exact_matches_brute_force(block_tokens: int) -> None:
    queries, docs = _data()
    reference = _brute(queries, docs)
    np.testing.assert_allclose(exact_scores(queries, docs, block_tokens=block_tokens), reference, atol=1e-5)
    found = maxsim_search(queries, docs, 5, block_tokens=block_tokens)
    assert found.exact and found.info["search"] == "exact"
    for i in range(len(queries)):
        assert found.indices[i].tolist() == _ranking(reference[i], 5)
        np.testing.assert_allclose(found.scores[i], np.sort(reference[i])[::-1][:5], atol=1e-5)


def test_faiss_candidates_then_exact_rerank() -> None:
    queries, docs = _data(1)
    reference = _brute(queries, docs)
    total = sum(d.shape[0] for d in docs)
    deep = maxsim_search(queries, docs, 5, mode="faiss", candidate_depth=total)  # every token: exact
    assert not deep.exact and deep.info == {"multi_vector": True, "search": "faiss",
                                            "candidate_depth": total, "candidate_index": "flat",
                                            "block_tokens": 1 << 18}
    for i in range(len(queries)):
        assert deep.indices[i].tolist() == _ranking(reference[i], 5)
    shallow = maxsim_search(queries, docs, 5, mode="faiss", candidate_depth=1)
    for i, q in enumerate(queries):  # candidates = owners of each query token's nearest doc token
        owners = {int(np.argmax([max(float(t @ d_tok) for d_tok in d) for d in docs])) for t in q}
        got = [j for j in shallow.indices[i].tolist() if j >= 0]
        assert set(got) == owners or set(got) <= owners  # ties of equal tokens can only shrink it
        assert got == _ranking(reference[i], 5, owners)[: len(got)]


def test_per_query_candidates_and_exclude() -> None:
    queries, docs = _data(2)
    reference = _brute(queries, docs)
    cands = [np.array([3, 1, 7, 20]), np.array([0, 39])] + [np.arange(10)] * 5
    found = maxsim_search(queries, docs, 3, candidates=cands)
    for i, c in enumerate(cands):
        want = _ranking(reference[i], 3, set(c.tolist()))
        assert [j for j in found.indices[i].tolist() if j >= 0] == want
    assert found.indices[1, 2] == -1  # only two candidates
    excl = np.array([_ranking(reference[i], 1)[0] for i in range(len(queries))])
    without = maxsim_search(queries, docs, 2, exclude=excl)
    for i in range(len(queries)):
        assert without.indices[i].tolist() == _ranking(reference[i], 3)[1:]
    with pytest.raises(VembedError):
        maxsim_search(queries, docs, 3, mode="plaid")
    with pytest.raises(VembedError):
        maxsim_search([np.zeros((0, 8), np.float32)], docs, 3)


# -- ColBERT encoder and evaluate_multivector ------------------------------------------------
WORDS = "why do cats purr how rockets reach space bread rise yeast makes gas burn fuel orbit sleep all day".split()


@pytest.fixture(scope="module")
def colbert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("colbert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "?"] + sorted(set(WORDS)) + ["unjudged", "question"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    save_file({"weight": torch.randn(12, 32)}, str(folder / "colbert_linear.safetensors"))
    return folder


def test_colbert_tokens_match_manual_projection(colbert_dir: Path) -> None:
    import torch
    import transformers
    from safetensors.torch import load_file

    from vembed_bench.encoders.colbert import ColBERTEncoder

    enc = ColBERTEncoder(colbert_dir, EncoderOptions(show_progress=False, device="cpu"))
    texts = ["why do cats purr", "bread rise", "rockets burn fuel to reach orbit all day"]
    got = enc.encode_tokens(texts, batch_size=2)
    model = transformers.AutoModel.from_pretrained(colbert_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(colbert_dir)
    weight = load_file(str(colbert_dir / "colbert_linear.safetensors"))["weight"]
    for text, mat in zip(texts, got):
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            h = model(**ids).last_hidden_state[0] @ weight.T
        ref = torch.nn.functional.normalize(h, dim=-1).numpy()
        assert mat.shape == (ids["input_ids"].shape[1], 12)
        np.testing.assert_allclose(mat, ref, atol=1e-5)
    assert enc.describe()["multi_vector"] and enc.dim == 12
    with pytest.raises(VembedError, match="multi-vector"):
        enc.encode_queries([Item("q", "why")])


def test_evaluate_multivector_records_search(colbert_dir: Path, tiny_beir: Path) -> None:
    from vembed_bench.evaluation import evaluate

    exact = evaluate(tiny_beir, str(colbert_dir), results_dir=None, show_progress=False,
                     device="cpu", k_values=[1, 3], main_metric="ndcg@3")
    assert exact.search_info["search"] == "exact" and exact.search_info["exact"] is True
    approx = evaluate(tiny_beir, str(colbert_dir), results_dir=None, show_progress=False,
                      device="cpu", k_values=[1, 3], main_metric="ndcg@3", maxsim="faiss", candidate_depth=1000)
    assert approx.search_info["search"] == "faiss" and approx.search_info["candidate_depth"] == 1000
    assert approx.scores == exact.scores  # depth beyond all tokens: same ranking
    assert exact.embedding_dim == 12


def test_large_corpora_get_an_inverted_file_token_index(monkeypatch):
    """Above IVF_MIN_TOKENS the candidates come from an IVF index; a deep rerank still finds
    the exact top documents for queries built from one document's tokens."""
    from vembed_bench.search import maxsim as module

    rng = np.random.default_rng(3)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    docs = [unit(rng.normal(size=(int(rng.integers(5, 30)), 16))) for _ in range(200)]
    queries = [unit(docs[g][:4] + 0.05 * rng.normal(size=(min(4, docs[g].shape[0]), 16))) for g in (3, 50, 120)]
    monkeypatch.setattr(module, "IVF_MIN_TOKENS", 100)
    found = module.maxsim_search(queries, docs, 3, mode="faiss", candidate_depth=64)
    exact = module.maxsim_search(queries, docs, 3, mode="exact")
    assert found.info["candidate_index"].startswith("ivf")
    assert found.indices[:, 0].tolist() == exact.indices[:, 0].tolist() == [3, 50, 120]
