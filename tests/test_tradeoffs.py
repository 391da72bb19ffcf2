"""Deployment trade-offs: every variant's quality equals an independent numpy computation (truncation,
float16, int8 and binary-with-rescoring by hand, scored by the project's metrics), the Pareto front is
right on hand-made points, the stored report round-trips and names what reproduces it, and the CLI
refuses bad values in one line. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from tests.conftest import write_beir
from vembed_bench.data.types import Item

HAS_FAISS = importlib.util.find_spec("faiss") is not None
pytestmark = pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")

DIM, N_DOCS, N_QUERIES, KS = 32, 200, 40, (1, 5, 10)
RESCORE_FACTOR = 3  # binary: 3 x 10 = 30 Hamming candidates of 200 rows, then float32 rescoring
EF_SEARCH = 256  # above the corpus size: HNSW visits every row and must equal exact search
DIMS = (DIM, 16, 12)  # 12: sign bits padded to 16
FACTORIES = ("SQfp16", "IVF4096,Flat")  # the second cannot train 4,096 lists on 200 rows: skipped, said


class RandomEncoder:
    """Fixed random vectors by item id; query q<i> lies near document d<i>."""

    name = "random-encoder"

    def _vectors(self, items: Sequence[Item]) -> np.ndarray:
        rows = []
        for item in items:
            base = np.random.default_rng(int(item.id[1:])).normal(size=DIM)
            noise = np.random.default_rng(_seed(item.id)).normal(size=DIM)
            rows.append(base + (0.9 if item.id.startswith("q") else 0.3) * noise)
        x = np.asarray(rows, dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._vectors(items)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return self._vectors(items)

    def fingerprint(self) -> str:
        return "random-encoder-1"

    def describe(self) -> dict[str, Any]:
        return {"type": "random", "name": self.name}


def _seed(item_id: str) -> int:
    return 10_000 + sum((i + 1) * ord(c) for i, c in enumerate(item_id))


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("task")
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(N_DOCS)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(N_QUERIES)]
    qrels = [(f"q{i}", f"d{i}", 1) for i in range(N_QUERIES)] + [(f"q{i}", f"d{i + 100}", 2) for i in range(10)]
    return write_beir(root / "syn", corpus, queries, {"test": qrels})


@pytest.fixture(scope="module")
def study(task: Path, tmp_path_factory):
    from vembed_bench.evaluation.tradeoffs import TradeoffOptions, run_tradeoffs
    from vembed_bench.options import EvalOptions

    results = tmp_path_factory.mktemp("results")
    options = TradeoffOptions(dims="full,16,12",
                              precisions="float32,float16,int8,binary", indexes="flat,hnsw,ivfpq",
                              factories=FACTORIES, rescore_factor=RESCORE_FACTOR, latency_queries=5, warmup=1, batch_seconds=0.001,
                              ef_search=EF_SEARCH)
    eval_options = EvalOptions(k_values=KS, cache="off", results_dir=results, show_progress=False)
    report = run_tradeoffs(task, RandomEncoder(), options=options, eval_options=eval_options)
    return report, results


@pytest.fixture(scope="module")
def by_hand(task: Path):
    """The task's data and the encoder's vectors, straight from the loader and the encoder."""
    from vembed_bench.data import load_task, resolve_card

    data = load_task(resolve_card(task), None)
    encoder = RandomEncoder()
    return data, encoder.encode_queries(data.queries), encoder.encode_documents(data.corpus)


# -- the independent computation ------------------------------------------------------------------


def truncated(x: np.ndarray, dim: int) -> np.ndarray:
    y = x[:, :dim].astype(np.float64)
    return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)


def stored_by_hand(corpus: np.ndarray, precision: str) -> np.ndarray:
    """What a document contributes to a score, dequantised: float16 round trip, symmetric int8."""
    if precision == "float32":
        return corpus
    if precision == "float16":
        return corpus.astype(np.float16).astype(np.float32)
    peak = np.abs(corpus).max(axis=0)
    scale = np.where(peak > 0, peak / 127, 1.0)
    codes = np.clip(np.round(corpus / scale), -127, 127)
    assert codes.min() >= -127 and codes.max() <= 127
    return (codes * scale).astype(np.float32)


def top_by_score(scores: np.ndarray, k: int, columns: np.ndarray | None = None) -> np.ndarray:
    """Corpus positions of the k best scores of each row (ties: lower position), via python sorting."""
    out = []
    for r, row in enumerate(scores):
        cols = columns[r] if columns is not None else np.arange(len(row))
        ranked = sorted(zip(cols.tolist(), row.tolist()), key=lambda pair: (-pair[1], pair[0]))
        out.append([c for c, _ in ranked[:k]])
    return np.asarray(out, dtype=np.int64)


def binary_by_hand(queries: np.ndarray, corpus: np.ndarray, depth: int, k: int) -> np.ndarray:
    """Sign bits, Hamming distance by counting differing bits, the ``depth`` nearest (ties: lower
    position), then exact float32 rescoring of those candidates."""
    qbits, cbits = queries > 0, corpus > 0
    hamming = (qbits[:, None, :] != cbits[None, :, :]).sum(axis=2)
    candidates = np.array([sorted(range(len(corpus)), key=lambda j: (h[j], j))[:depth] for h in hamming])
    scores = np.einsum("qd,qcd->qc", queries.astype(np.float64), corpus[candidates].astype(np.float64))
    return top_by_score(scores, k, candidates)


def reference_ids(queries: np.ndarray, corpus: np.ndarray, precision: str, k: int, depth: int) -> np.ndarray:
    if precision == "binary":
        return binary_by_hand(queries, corpus, depth, k)
    return top_by_score(queries.astype(np.float64) @ stored_by_hand(corpus, precision).astype(np.float64).T, k)


# -- tests ------------------------------------------------------------------------------------------


def test_binary_cut_has_hamming_ties(by_hand):
    """The fixture exercises the tie rule: at 12 and 16 dims many queries tie at the 30th code."""
    _, queries, corpus = by_hand
    q, c = truncated(queries, 12) > 0, truncated(corpus, 12) > 0
    hamming = np.sort((q[:, None, :] != c[None, :, :]).sum(axis=2), axis=1)
    assert (hamming[:, 29] == hamming[:, 30]).mean() > 0.5


VARIANTS = [(precision, index) for index in ("flat", "hnsw") for precision in ("float32", "float16", "int8", "binary")
            if (precision, index) != ("binary", "hnsw")]
"""Binary HNSW is left out: among codes tied in Hamming distance at the cut, the graph keeps its own choice."""


@pytest.mark.parametrize("precision, index", VARIANTS)
@pytest.mark.parametrize("dim", DIMS)
def test_variant_quality_equals_numpy_by_hand(study, by_hand, dim, precision, index):
    from vembed_bench.metrics import score_indices

    report, _ = study
    data, queries, corpus = by_hand
    q, x = truncated(queries, dim), truncated(corpus, dim)
    k, depth = max(KS), RESCORE_FACTOR * 10
    variant = report.variant(f"d{dim} {precision} {index}")
    assert (variant.dim, variant.precision, variant.index) == (dim, precision, index)
    expected = score_indices(reference_ids(q, x, precision, k, depth), data.query_ids(), data.corpus_ids(),
                             data.qrels, KS)
    assert variant.scores == pytest.approx(expected.aggregate, abs=1e-12)
    assert variant.main_score == expected.aggregate["ndcg@10"]
    full = reference_ids(queries, corpus, "float32", k, depth)
    mine = reference_ids(q, x, precision, k, depth)
    for cutoff in KS:
        overlap = np.mean([len(set(a[:cutoff]) & set(b[:cutoff])) / cutoff for a, b in zip(mine, full)])
        assert variant.fidelity[f"fidelity@{cutoff}"] == pytest.approx(overlap, abs=1e-12)


@pytest.mark.parametrize("dim", DIMS)
def test_factory_variant_quality_equals_numpy_by_hand(study, by_hand, dim):
    """``SQfp16`` through faiss.index_factory stores what a float16 round trip in numpy gives."""
    from vembed_bench.metrics import score_indices

    report, _ = study
    data, queries, corpus = by_hand
    q, x = truncated(queries, dim), truncated(corpus, dim)
    variant = report.variant(f"d{dim} own SQfp16")
    expected = score_indices(reference_ids(q, x, "float16", max(KS), 0), data.query_ids(), data.corpus_ids(),
                             data.qrels, KS)
    assert variant.scores == pytest.approx(expected.aggregate, abs=1e-12)
    assert variant.memory["code_bytes"] == N_DOCS * dim * 2 and variant.params["faiss_index"] == "SQfp16"


def test_factory_that_cannot_train_is_skipped_with_faiss_reason(study):
    report, _ = study
    skipped = [s for s in report.skipped if s["index"] == "IVF4096,Flat"]
    assert [s["dim"] for s in skipped] == list(DIMS)
    assert all("4096" in s["reason"] and "200" in s["reason"] for s in skipped), skipped
    assert "--factory IVF4096,Flat" in report.command and "--factory SQfp16" in report.command


@pytest.mark.parametrize("dim", DIMS)
def test_code_bytes_follow_the_precision_formula(study, dim):
    """Stored code bytes: n*d*4 (float32), n*d*2 (float16), n*d (int8), n*ceil(d/8) (binary), the same under
    HNSW (its links are extra, counted in the serialised size); binary also keeps n*d*4 for rescoring."""
    report, _ = study
    expected = {"float32": N_DOCS * dim * 4, "float16": N_DOCS * dim * 2, "int8": N_DOCS * dim,
                "binary": N_DOCS * -(-dim // 8)}
    for index in ("flat", "hnsw"):
        for precision, code in expected.items():
            memory = report.variant(f"d{dim} {precision} {index}").memory
            assert memory["code_bytes"] == code, (precision, index)
            assert memory["index_bytes"] > code  # header, scales, graph links on top of the codes
            rescore = N_DOCS * dim * 4 if precision == "binary" else 0
            assert memory["rescore_bytes"] == rescore
            assert memory["total_bytes"] == memory["index_bytes"] + rescore
    flat, hnsw = (report.variant(f"d{dim} float32 {i}").memory["index_bytes"] for i in ("flat", "hnsw"))
    assert hnsw - flat >= N_DOCS * 4 * 16  # at least M=32 links of 4 bytes on layer 0 for most nodes


def test_full_float32_flat_equals_eval_and_quantised_variants_store_less(study, task):
    from vembed_bench.evaluation import evaluate

    report, _ = study
    plain = evaluate(task, RandomEncoder(), k_values=KS, cache="off", results_dir=None, show_progress=False)
    exact = report.variant(f"d{DIM} float32 flat")
    assert exact.scores == pytest.approx(plain.scores, abs=1e-12)
    assert exact.fidelity[f"fidelity@{max(KS)}"] == 1.0 and exact.exact
    per_vector = {p: report.variant(f"d{DIM} {p} flat").memory["index_bytes"] for p in
                  ("float32", "float16", "int8", "binary")}
    # serialised sizes: codes of 4, 2, 1 and 1/8 bytes a dimension, plus small headers
    assert per_vector["float32"] >= 4 * DIM * N_DOCS > per_vector["float16"] >= 2 * DIM * N_DOCS
    assert per_vector["float16"] > per_vector["int8"] >= DIM * N_DOCS > per_vector["binary"] >= DIM // 8 * N_DOCS
    binary = report.variant(f"d{DIM} binary flat").memory
    assert binary["rescore_bytes"] == 4 * DIM * N_DOCS
    assert binary["total_bytes"] == binary["index_bytes"] + binary["rescore_bytes"]


def test_ivfpq_is_skipped_on_a_small_corpus_and_said(study):
    report, _ = study
    skipped = [s for s in report.skipped if s["index"] == "ivfpq"]
    assert [s["dim"] for s in skipped] == list(DIMS)
    assert all("9,984" in s["reason"] and f"{N_DOCS:,}" in s["reason"] for s in skipped)
    assert not any(v.index == "ivfpq" for v in report.variants)
    from vembed_bench.report.tradeoffs import notes

    assert sum("skipped ivfpq" in line for line in notes(report)) == 1


def test_ivfpq_on_a_big_enough_corpus_stores_pq_codes():
    from vembed_bench.search.compressed import IVFPQ_MIN_CORPUS, IndexParams, build, pq_subquantizers

    rng = np.random.default_rng(0)
    x = rng.normal(size=(IVFPQ_MIN_CORPUS, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    built = build(x, "pq", "ivfpq", IndexParams(), 10)
    scores, ids = built.search(x[:20], 10)
    assert pq_subquantizers(32) == 4 and built.params["pq_subquantizers"] == 4
    assert built.memory()["code_bytes"] == 4 * len(x)  # one byte per sub-quantiser a row
    assert ids.shape == (20, 10) and ids.min() >= 0 and (np.diff(scores, axis=1) <= 0).all()
    assert built.memory()["index_bytes"] < 4 * 32 * len(x) // 4  # 4 code bytes a row, far below float32
    assert pq_subquantizers(96) == 12 and pq_subquantizers(100) == 10 and pq_subquantizers(7) == 1


def test_pareto_front_on_hand_made_points():
    from vembed_bench.evaluation.tradeoffs import pareto_front

    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (3.0, 0.7), (0.5, 0.2), (4.0, 0.9), (4.0, 0.9), (None, 1.0),
              (5.0, 0.85), (0.5, 0.1), (float("nan"), 0.99)]
    # (2, .6) and (3, .7) lose to (2, .7); (5, .85) to (4, .9); (0.5, .1) to (0.5, .2); equal points both stay
    assert pareto_front(points) == [4, 0, 1, 5, 6]
    assert pareto_front([]) == [] and pareto_front([(1.0, 1.0)]) == [0]


def test_report_fronts_hold_exactly_the_undominated_variants(study):
    report, _ = study
    for front, cost in (("latency", lambda v: v.latency["p50_ms"]), ("memory", lambda v: v.memory["total_bytes"])):
        undominated = {v.label for v in report.variants
                       if not any(cost(o) <= cost(v) and o.main_score >= v.main_score
                                  and (cost(o) < cost(v) or o.main_score > v.main_score) for o in report.variants)}
        assert set(report.pareto[front]) == undominated
        costs = [cost(report.variant(label)) for label in report.pareto[front]]
        assert costs == sorted(costs)


def test_report_round_trips_and_names_what_reproduces_it(study, task, by_hand):
    from vembed_bench.data import data_fingerprint
    from vembed_bench.evaluation import evaluate
    from vembed_bench.evaluation.tradeoffs import load_tradeoffs
    from vembed_bench.report.collect import find_result_files

    report, results = study
    path = report.default_path(results)
    assert path.name == "test.tradeoffs.json"
    stored = json.loads(path.read_text())
    loaded = load_tradeoffs(path)
    assert loaded.to_dict() == stored == json.loads(json.dumps(report.to_dict()))
    # beside the model's result of the same encode and settings
    result_path = evaluate(task, RandomEncoder(), k_values=KS, cache="off", results_dir=results,
                           show_progress=False).default_path(results)
    assert result_path.with_suffix(".tradeoffs.json") == path
    assert [f.path for f in find_result_files(results)] == [result_path.resolve()]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary files left
    for sibling in ("test.tradeoffs.md", "test.tradeoffs.plot.png", "test.tradeoffs.plot.svg"):
        assert (path.parent / sibling).is_file()
    assert find_result_files(results)[0].images == []  # the plot is not taken for a retrieval grid

    data = by_hand[0]
    assert stored["task_info"]["data_fingerprint"] == data_fingerprint(data)
    assert stored["model_info"]["fingerprint"] == "random-encoder-1"
    assert stored["model_info"]["weights_fingerprint"]
    assert stored["settings"]["dim"] is None and stored["settings_key"] == ""
    options = stored["options"]
    assert options["dims"] == list(DIMS) and options["precisions"] == ["float32", "float16", "int8", "binary"]
    assert options["indexes"] == ["flat", "hnsw", "ivfpq"] and options["rescore_depth"] == 30
    measurement = stored["measurement"]
    assert measurement["threads"] >= 1 and measurement["latency_queries"] == 5
    assert measurement["throughput_batch"] == N_QUERIES and measurement["warmup_searches"] == 1
    assert measurement["faiss"] and measurement["clock"] == "time.perf_counter"
    assert {"int8", "binary", "latency", "throughput", "memory", "fidelity", "pareto"} <= set(stored["method"])
    assert "numpy" in stored["environment"]["versions"] and stored["environment"]["hardware"]["cpu_count"]
    assert stored["k_values"] == list(KS) and stored["main_metric"] == "ndcg@10"
    for flag in ("--dims 32,16,12", "--precisions float32,float16,int8,binary", "--indexes flat,hnsw,ivfpq",
                 "--rescore-factor 3", "--latency-queries 5", "--ef-search 256", "--k 1,5,10", "--seed 0"):
        assert flag in stored["command"]
    for variant in stored["variants"]:
        assert variant["latency"]["queries"] == 5 and 0 < variant["latency"]["p50_ms"] <= variant["latency"]["p99_ms"]
        assert variant["throughput"]["qps"] > 0 and variant["build_seconds"] >= 0
        assert variant["throughput"]["batch"] == N_QUERIES and variant["throughput"]["calls"] >= 3


def test_markdown_table_lists_every_variant_and_marks_the_fronts(study):
    from vembed_bench.report.tradeoffs import markdown

    report, _ = study
    text = markdown(report)
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| dim")]
    assert len(rows) == len(report.variants)
    for label in report.pareto["memory"]:
        dim, precision, index = label[1:].split()
        row = next(r for r in rows if r.startswith(f"| {dim} | {precision} | {index} |"))
        assert row.rstrip(" |").endswith("M") or row.rstrip(" |").endswith("LM")


def test_options_refuse_bad_values_in_one_line():
    from vembed_bench.errors import VembedError
    from vembed_bench.evaluation.tradeoffs import TradeoffOptions, resolve_dims

    for kwargs, message in (({"precisions": "float32,float8"}, "--precisions: unknown precision 'float8'"),
                            ({"indexes": "flat,annoy"}, "--indexes: unknown index 'annoy'"),
                            ({"dims": "full,0"}, "--dims '0' is not a dimension"),
                            ({"dims": "abc"}, "--dims 'abc' is not a dimension"),
                            ({"precisions": ","}, "--precisions is empty"),
                            ({"threads": 0}, "--threads 0 must be a positive integer"),
                            ({"rescore_factor": 0}, "--rescore-factor 0 must be a positive integer")):
        with pytest.raises(VembedError, match=message.replace("(", r"\(")) as err:
            TradeoffOptions(**kwargs)
        assert "\n" not in str(err.value)
    assert resolve_dims(None, 384) == [384, 192, 96]
    assert resolve_dims(("full", 64, 64), 384) == [384, 64]
    with pytest.raises(VembedError, match="--dims 512 is larger than the model's 384 dimensions"):
        resolve_dims((512,), 384)


# -- the command line -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.train_helpers import tiny_st_folder

    return tiny_st_folder(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def small_task(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(12)]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 3} number {i}"} for i in range(6)]
    return write_beir(tmp_path / "toy", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(6)]})


def _common(tmp_path: Path) -> list[str]:
    return ["--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]


@pytest.mark.parametrize("args, expected", [
    (["--precisions", "float32,float8"], "error: --precisions: unknown precision 'float8'; choose from float32, "
                                         "float16, int8, binary"),
    (["--indexes", "annoy"], "error: --indexes: unknown index 'annoy'; choose from flat, hnsw, ivfpq"),
    (["--dims", "64"], "error: --dims 64 is larger than the model's 32 dimensions"),
    (["--dims", "16,-4"], "error: --dims '-4' is not a dimension"),
    (["--threads", "0"], "error: --threads 0 must be a positive integer"),
    (["--factory", "PQ5"], "error: --factory 'PQ5': faiss.index_factory refuses it at dim 32 (The dimension of "
                           "the vector (d) should be a multiple of the number of subquantizers (M))"),
    (["--dims", "full,16", "--factory", "HNSW8,Nonsense"], "error: --factory 'HNSW8,Nonsense': faiss.index_factory "
                                                           "refuses it at dim 32"),
    (["--factory", "IVF8, PQ4"], "error: --factory 'IVF8, PQ4' is not a faiss index_factory string"),
])
def test_cli_refuses_bad_values_in_one_line_and_writes_nothing(capsys, tmp_path, tiny_model, small_task, args,
                                                               expected):
    from tests.test_cli_eval import cli

    code, out, err = cli(capsys, "-q", "tradeoffs", "-t", str(small_task), "-m", str(tiny_model), *args,
                         *_common(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2, err
    assert lines == [expected] or (len(lines) == 1 and lines[0].startswith(expected)), err
    assert not (tmp_path / "res").exists()
    assert not list((tmp_path / "cache").rglob("*.npy"))  # refused before the encode


def test_cli_runs_a_small_study_and_writes_the_report(capsys, tmp_path, tiny_model, small_task):
    from tests.test_cli_eval import cli
    from vembed_bench.evaluation.tradeoffs import load_tradeoffs

    code, out, err = cli(capsys, "tradeoffs", "-t", str(small_task), "-m", str(tiny_model), "--dims", "full,16",
                         "--precisions", "float32,int8,binary", "--indexes", "flat", "--latency-queries", "3",
                         "--threads", "1", "--k", "1,5", "--main-metric", "ndcg@5", *_common(tmp_path))
    assert code == 0, err
    files = sorted((tmp_path / "res").rglob("*.tradeoffs.*"))
    assert [f.name for f in files] == ["test.tradeoffs.json", "test.tradeoffs.md", "test.tradeoffs.plot.png",
                                       "test.tradeoffs.plot.svg"]
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in files[3].read_bytes()[:500]
    report = load_tradeoffs(files[0])
    assert [v.label for v in report.variants] == ["d32 float32 flat", "d32 int8 flat", "d32 binary flat",
                                                  "d16 float32 flat", "d16 int8 flat", "d16 binary flat"]
    assert report.measurement["threads"] == 1 and report.measurement["threads_requested"] == 1
    assert "binary" in out and "int8" in out
    assert str(files[0]) in out.replace("\n", "")

    # every printed row comes from the file: the Markdown written beside it is the table of the loaded report
    from vembed_bench.report.tradeoffs import markdown

    assert files[1].read_text() == markdown(report, "test.tradeoffs.plot.png")

    # the leaderboard over the folder lists the eval result and passes over the trade-off report
    code, _, err = cli(capsys, "-q", "eval", "-t", str(small_task), "-m", str(tiny_model), "--k", "1,5",
                       "--main-metric", "ndcg@5", *_common(tmp_path))
    assert code == 0, err
    code, _, err = cli(capsys, "-q", "leaderboard", str(tmp_path / "res"), "-o", str(tmp_path / "lb"), "--no-plots",
                       "--no-html", "--resamples", "100")
    assert code == 0, err
    assert report.model in (tmp_path / "lb" / "README.md").read_text()
    code, _, err = cli(capsys, "-q", "leaderboard", str(files[0]), "-o", str(tmp_path / "lb2"))
    assert code == 2 and err.strip().splitlines() == [
        f"error: {files[0]}: a deployment trade-off report, not an eval result; its table is the "
        "test.tradeoffs.md beside it (leaderboard folders pass over it)"]

    # served from the embedding cache now: a too-wide --dims is still refused before anything is written
    code, _, err = cli(capsys, "-q", "tradeoffs", "-t", str(small_task), "-m", str(tiny_model), "--dims", "64",
                       "--results-dir", str(tmp_path / "res2"), "--cache-dir", str(tmp_path / "cache"),
                       "--device", "cpu")
    assert code == 2 and err.strip().splitlines() == ["error: --dims 64 is larger than the model's 32 dimensions"]
    assert not (tmp_path / "res2").exists()


def test_default_dims_are_full_half_and_quarter_and_nothing_is_written_without_a_folder(task):
    from vembed_bench.evaluation.tradeoffs import TradeoffOptions, run_tradeoffs
    from vembed_bench.options import EvalOptions

    options = TradeoffOptions(precisions="float32", indexes="flat", latency_queries=2, warmup=0, batch_seconds=0.001)
    report = run_tradeoffs(task, RandomEncoder(), options=options,
                           eval_options=EvalOptions(k_values=KS, cache="off", results_dir=None, show_progress=False))
    assert [v.label for v in report.variants] == [f"d{d} float32 flat" for d in (DIM, DIM // 2, DIM // 4)]
    assert report.variants[0].fidelity[f"fidelity@{max(KS)}"] == 1.0
