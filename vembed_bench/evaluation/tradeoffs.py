"""Deployment trade-offs: what each way of storing and searching a model's vectors costs and keeps.

From one encode (through the embedding cache, like ``eval``), every variant
(embedding dim x precision x index, see :mod:`vembed_bench.search.compressed`)
is built over the corpus and measured:

- **quality**: all queries are searched and their rankings scored with the
  task's metrics (:func:`vembed_bench.metrics.score_indices`);
- **retrieval fidelity**: recall@k of those rankings against exact float32
  search of the full-dimension vectors (``fidelity``), and against exact float32
  search at the variant's own dimension (``fidelity_same_dim``: what precision
  and index lose, without the truncation), as in :mod:`vembed_bench.search.recall`;
- **latency** at batch 1 on a seeded sample of queries (p50, p99) and
  **throughput** of one batch of all queries (:mod:`vembed_bench.search.timing`);
- **memory**: bytes of the index as faiss serialises it, plus the float32
  vectors a binary variant rescores with.

A truncated dimension keeps the leading ``dim`` values and renormalises them
(Matryoshka, as ``eval --dims``). Every search fetches the task's deepest
cutoff ``k``; binary candidates are ``rescore_factor`` times the main metric's
cutoff (at least that ``k``). The Pareto fronts (quality against p50 latency,
and against memory) name the variants no other beats on both axes.

The report is stored beside the model's results as
``<split>[.<settings>].tradeoffs.json`` (written last, atomically), with a
Markdown table and a plot next to it (:mod:`vembed_bench.report.tradeoffs`).
"""

from __future__ import annotations

import json
import logging
import math
import shlex
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vembed_bench.atomic import write_json
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions, EvalOptions
from vembed_bench.results import TRADEOFFS_KIND
from vembed_bench.search.compressed import (
    FACTORY_PRECISION,
    INDEXES,
    PQ_PRECISION,
    PRECISIONS,
    IndexParams,
    build,
    skip_reason,
)
from vembed_bench.search.faiss_backend import HNSW_EF_CONSTRUCTION, HNSW_M, IVF_NPROBE
from vembed_bench.search.timing import BATCH_SECONDS, LATENCY_QUERIES, WARMUP

log = logging.getLogger("vembed_bench.run")

SCHEMA_VERSION = 1
KIND = TRADEOFFS_KIND
DEFAULT_PRECISIONS = PRECISIONS
DEFAULT_INDEXES = ("flat", "hnsw")
RESCORE_FACTOR = 10
FULL = "full"

_METHOD = {
    "dims": "the leading dim values of each vector, renormalised to unit length (Matryoshka truncation)",
    "float16": "faiss ScalarQuantizer QT_fp16; float32 queries",
    "int8": ("symmetric per-dimension scalar quantisation from the corpus: scale_j = max_i |x_ij| / 127 "
             "(1 for an all-zero dimension), code = clip(round(x / scale), -127, 127); a float32 query q "
             "scores q . (code * scale) (faiss QT_8bit with its per-dimension range set to this grid)"),
    "binary": ("sign bits (x > 0) of queries and documents; the rescore_depth nearest codes by Hamming "
               "distance (faiss binary index) are rescored by exact float32 inner product; of codes tied at the "
               "cut the flat index keeps the lower corpus positions, HNSW its own choice"),
    "ivfpq": "faiss IVF{nlist},PQ{m}: nlist about 4*sqrt(n), m the largest divisor of dim up to dim/8, 8 bits each",
    "factory": ("faiss.index_factory(dim, string, METRIC_INNER_PRODUCT), trained on the corpus when it needs "
                "training; efSearch (at least the rows fetched) and nprobe set where the index has them; "
                "precision 'own': the string says how vectors are stored"),
    "fidelity": ("recall@k of the variant's top-k ids against exact float32 inner-product search (the "
                 "project's search, flat) of the full-dimension vectors; fidelity_same_dim: against exact "
                 "float32 search at the variant's dim"),
    "memory": ("bytes of faiss.serialize_index (codes, graph links, centroids, quantiser ranges, header) + "
               "the float32 vectors a binary variant rescores with (rescore_bytes)"),
    "latency": ("batch-1 searches of a seeded sample of queries after warm-up searches, each timed with "
                "time.perf_counter, garbage collection paused; p50/p99 by numpy.percentile (linear); the "
                "search only (query quantisation, index search, rescoring, ordering), not query encoding"),
    "throughput": ("all queries in one search call, after one untimed call, repeated until the time and "
                   "call minimums; queries/s = queries / median call time"),
    "pareto": ("a variant is on a front when no other variant has a main score at least as high and a cost "
               "(p50 latency, or total memory) at most as high, one of them strictly"),
}


# -- options ---------------------------------------------------------------------------------------


def _positive_int(flag: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise VembedError(f"{flag} {value!r} must be a positive integer")
    return int(value)


def _names(flag: str, value: Any, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value or ())
    names = [str(item).strip().lower() for item in items if str(item).strip()]
    if not names:
        raise VembedError(f"{flag} is empty; give one or more of: {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise VembedError(f"{flag}: unknown {what} {name!r}; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(names))


def _factories(value: Any) -> tuple[str, ...]:
    """Factory strings, one per ``--factory`` (commas belong to the string: ``IVF256,PQ16``)."""
    items = [value] if isinstance(value, str) else list(value or ())
    specs: list[str] = []
    for item in items:
        spec = str(item).strip()
        if not spec or any(c.isspace() for c in spec):
            raise VembedError(f"--factory {str(item)!r} is not a faiss index_factory string; give one without "
                              "spaces, e.g. --factory HNSW32,SQ8")
        specs.append(spec)
    return tuple(dict.fromkeys(specs))


def _dims(value: Any) -> tuple[int | str, ...] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    dims: list[int | str] = []
    for item in items:
        token = str(item).strip().lower()
        if not token:
            continue
        if token == FULL:
            dims.append(FULL)
        elif token.isdigit() and int(token) > 0:
            dims.append(int(token))
        else:
            raise VembedError(f"--dims {str(item).strip()!r} is not a dimension; give positive integers or "
                              "'full', e.g. --dims full,256,128")
    if not dims:
        raise VembedError("--dims is empty; give positive integers or 'full', e.g. --dims full,256,128")
    return tuple(dict.fromkeys(dims))


@dataclass(frozen=True)
class TradeoffOptions:
    """What a trade-off study measures; lists may be given as comma-separated strings."""

    dims: tuple[int | str, ...] | None = None
    """Dimensions to truncate to (``"full"``: all); None: full, half and quarter."""
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    indexes: tuple[str, ...] = DEFAULT_INDEXES
    factories: tuple[str, ...] = ()
    """``faiss.index_factory`` strings measured besides ``indexes`` (each stores vectors its own way)."""
    rescore_factor: int = RESCORE_FACTOR
    latency_queries: int = LATENCY_QUERIES
    warmup: int = WARMUP
    batch_seconds: float = BATCH_SECONDS
    threads: int | None = None
    """faiss threads while building and measuring (None: faiss's default)."""
    hnsw_m: int = HNSW_M
    ef_construction: int = HNSW_EF_CONSTRUCTION
    ef_search: int = 64
    nprobe: int = IVF_NPROBE

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", _dims(self.dims))
        object.__setattr__(self, "precisions", _names("--precisions", self.precisions, PRECISIONS, "precision"))
        object.__setattr__(self, "indexes", _names("--indexes", self.indexes, INDEXES, "index"))
        object.__setattr__(self, "factories", _factories(self.factories))
        for name in ("rescore_factor", "latency_queries", "hnsw_m", "ef_construction", "ef_search", "nprobe"):
            _positive_int(f"--{name.replace('_', '-')}", getattr(self, name))
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise VembedError(f"--warmup {self.warmup!r} must be 0 or a positive number of searches")
        if self.threads is not None:
            _positive_int("--threads", self.threads)
        if (isinstance(self.batch_seconds, bool) or not isinstance(self.batch_seconds, (int, float))
                or not self.batch_seconds > 0):
            raise VembedError(f"batch_seconds {self.batch_seconds!r} must be a positive number of seconds")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def resolve_dims(dims: Sequence[int | str] | None, full: int) -> list[int]:
    """The dimensions to measure, largest first: ``full`` is the model's, None means full, half, quarter."""
    if dims is None:
        wanted = [full, full // 2, full // 4]
    else:
        wanted = [full if d == FULL else int(d) for d in dims]
    for dim in wanted:
        if dim > full:
            raise VembedError(f"--dims {dim} is larger than the model's {full} dimensions")
    return sorted({d for d in wanted if d >= 1}, reverse=True)


def check_factories(factories: Sequence[str], dims: Sequence[int]) -> None:
    """Refuse, in one line, a factory string faiss will not construct at one of the dims."""
    from vembed_bench.search.compressed import factory_error

    for spec in factories:
        for dim in dims:
            reason = factory_error(spec, dim)
            if reason is not None:
                raise VembedError(f"--factory {spec!r}: faiss.index_factory refuses it at dim {dim} ({reason}); "
                                  "see the faiss wiki 'The index factory' for the syntax")


# -- the record -------------------------------------------------------------------------------------


@dataclass
class Variant:
    """One (dim, precision, index) variant and what it measured."""

    dim: int
    precision: str
    index: str
    main_score: float
    scores: dict[str, float]
    fidelity: dict[str, float | None]
    fidelity_same_dim: dict[str, float | None]
    latency: dict[str, Any]
    throughput: dict[str, Any]
    memory: dict[str, int | float]
    build_seconds: float
    exact: bool
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"d{self.dim} {self.precision} {self.index}"


@dataclass
class TradeoffReport:
    """A trade-off study of one model on one task split; round-trips through its JSON file."""

    task: str
    split: str
    model: str
    main_metric: str
    k_values: list[int]
    variants: list[Variant]
    skipped: list[dict[str, Any]]
    pareto: dict[str, list[str]]
    """``latency`` / ``memory``: labels of the variants on each front, cheapest first."""
    options: dict[str, Any]
    measurement: dict[str, Any]
    method: dict[str, str]
    model_info: dict[str, Any]
    task_info: dict[str, Any]
    settings: dict[str, Any]
    settings_key: str
    command: str
    """A command line that repeats the study."""
    environment: dict[str, Any]
    timings: dict[str, float]
    created_at: str = ""
    kind: str = KIND
    schema_version: int = SCHEMA_VERSION

    @property
    def weights_fingerprint(self) -> str:
        info = self.model_info
        return str(info.get("weights_fingerprint") or info.get("fingerprint") or "nofp")

    def variant(self, label: str) -> Variant:
        return next(v for v in self.variants if v.label == label)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "TradeoffReport":
        record = dict(record)
        record["variants"] = [Variant(**v) for v in record["variants"]]
        return cls(**record)

    def default_path(self, results_dir: Path) -> Path:
        return tradeoffs_path(results_dir, self.model, self.weights_fingerprint, self.task, self.split,
                              self.settings_key)

    def save(self, path: Path) -> Path:
        write_json(Path(path), self.to_dict())
        return Path(path)


def tradeoffs_path(results_dir: Path, model: str, weights: str, task: str, split: str, key: str = "") -> Path:
    """``<split>[.<settings key>].tradeoffs.json`` beside the model's result of the same settings."""
    from vembed_bench.results import result_path

    return result_path(Path(results_dir), model, weights, task, split, key).with_suffix(".tradeoffs.json")


def load_tradeoffs(path: str | Path) -> TradeoffReport:
    """Read a file written by :meth:`TradeoffReport.save` (one-line error when it is not one)."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VembedError(f"{path}: cannot read trade-off file ({err})") from None
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise VembedError(f"{path}: not a vembed-bench trade-off file")
    if record.get("schema_version") != SCHEMA_VERSION:
        raise VembedError(f"{path}: unsupported trade-off schema {record.get('schema_version')!r}")
    try:
        return TradeoffReport.from_dict(record)
    except (TypeError, KeyError) as err:
        raise VembedError(f"{path}: damaged trade-off file ({type(err).__name__}: {err})") from None


# -- Pareto fronts ----------------------------------------------------------------------------------


def pareto_front(points: Sequence[tuple[float | None, float | None]]) -> list[int]:
    """Positions of the ``(cost, quality)`` points no other point dominates, cheapest first.

    A point is dominated when another has cost <= and quality >= with at least
    one strict; equal points do not dominate each other. Points with a missing
    or non-finite value are left out.
    """
    valid = [(i, float(c), float(q)) for i, (c, q) in enumerate(points)
             if c is not None and q is not None and math.isfinite(c) and math.isfinite(q)]
    front = [i for i, c, q in valid
             if not any(c2 <= c and q2 >= q and (c2 < c or q2 > q) for _, c2, q2 in valid)]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1], i))


def fronts(variants: Sequence[Variant]) -> dict[str, list[str]]:
    """Labels on the quality-latency (p50) and quality-memory (total bytes) fronts."""
    latency = [(v.latency.get("p50_ms"), v.main_score) for v in variants]
    memory = [(v.memory.get("total_bytes"), v.main_score) for v in variants]
    return {"latency": [variants[i].label for i in pareto_front(latency)],
            "memory": [variants[i].label for i in pareto_front(memory)]}


# -- the study --------------------------------------------------------------------------------------


def main_cutoff(main_metric: str, ks: Sequence[int]) -> int:
    """The cutoff of the main metric (``ndcg@10`` -> 10; ``precision@1`` -> 1), else the deepest k."""
    tail = main_metric.rsplit("@", 1)[-1]
    return int(tail) if "@" in main_metric and tail.isdigit() else max(ks)


def run_tradeoffs(task: Any, model: Any, *, options: TradeoffOptions | None = None,
                  eval_options: EvalOptions | None = None, encoder_options: EncoderOptions | None = None,
                  model_name: str | None = None, plots: bool = True,
                  on_variant: Callable[[Variant], None] | None = None) -> TradeoffReport:
    """Encode ``model`` on ``task`` once and measure every variant (see the module docstring).

    ``eval_options`` choose the split, query sample, K values, main metric, the
    cache and ``results_dir`` (None writes nothing; otherwise the report and its
    table and, with ``plots``, its plot are written beside the model's results). Bad options, tasks
    and models are refused in one line before any encoding; so are a ``dims``
    larger than the model's and a factory string faiss refuses at one of the dims
    (the width is read from the cache, or from encoding one query).
    """
    from vembed_bench.data import TaskCard, resolve_card
    from vembed_bench.data.suites import is_suite
    from vembed_bench.evaluation.dense import DenseMode
    from vembed_bench.evaluation.runner import ModelSpec, check_source, check_writable
    from vembed_bench.evaluation.stages import (
        Context,
        ModelHandle,
        cached_embeddings,
        embed,
        load_data,
        search_constraints,
        task_info,
        task_plan,
    )
    from vembed_bench.search.compressed import require_faiss

    options = options or TradeoffOptions()
    eval_options = eval_options or EvalOptions()
    encoder_options = encoder_options or EncoderOptions()
    require_faiss()
    card = task if isinstance(task, TaskCard) else resolve_card(task)
    if is_suite(card):
        raise VembedError(f"task {card.name} is a suite card; run tradeoffs on one of its member tasks")
    ks, main_metric = task_plan(card, eval_options)
    check_source(ModelSpec(model, model_name), encoder_options)
    check_writable(eval_options)
    handle = ModelHandle(model, encoder_options, name=model_name)
    if handle.multi_vector:
        raise VembedError(f"{handle.label} is a multi-vector (late interaction) model; deployment trade-offs "
                          "are measured for single-vector models")
    timings: dict[str, float] = {}
    data = load_data(card, eval_options, timings)
    exclude, candidates = search_constraints(data)
    if candidates is not None:
        raise VembedError(f"task {card.name} ranks per-query candidate lists; deployment trade-offs need a "
                          "search of the whole corpus")
    context = Context(eval_options)
    try:
        embedded = cached_embeddings(data, handle, context.store, timings)
        if embedded is None:
            if options.dims is not None or options.factories:
                # check --dims and --factory against the model's width (one query) before the encode
                probe = handle.encoder(timings).encode_queries(data.queries[:1], batch_size=1)
                check_factories(options.factories, resolve_dims(options.dims, int(np.asarray(probe).shape[-1])))
            embedded = embed(data, handle, context.store, timings, batch_size=eval_options.batch_size)
    finally:
        handle.close()  # the model is not needed for the measurements: free its memory first
    embedded = DenseMode().prepare(embedded, data)
    queries = np.ascontiguousarray(embedded.queries, dtype=np.float32)
    corpus = np.ascontiguousarray(embedded.corpus, dtype=np.float32)
    full = int(queries.shape[1])
    dims = resolve_dims(options.dims, full)
    check_factories(options.factories, dims)

    kmax = max(ks)
    fetch = min(len(corpus), kmax + (exclude is not None))
    params = IndexParams(hnsw_m=options.hnsw_m, ef_construction=options.ef_construction,
                         ef_search=options.ef_search, nprobe=options.nprobe,
                         rescore_depth=max(kmax, options.rescore_factor * main_cutoff(main_metric, ks)))
    study = _Study(data, ks, main_metric, exclude, params, options, eval_options, on_variant)
    start = time.perf_counter()
    from vembed_bench.search.timing import faiss_threads

    with faiss_threads(options.threads) as threads:
        study.run(queries, corpus, dims, fetch)
    timings["tradeoffs"] = round(time.perf_counter() - start, 4)

    model_info = dict(embedded.model_info)
    model_label = handle.options.name or embedded.name or str(handle.source)
    settings, key = _settings(eval_options, handle.options, data, model_info)
    report = TradeoffReport(
        task=card.name, split=data.split, model=model_label, main_metric=main_metric, k_values=list(ks),
        variants=study.variants, skipped=study.skipped, pareto=fronts(study.variants),
        options={**options.to_dict(), "dims": dims, "rescore_depth": params.rescore_depth},
        measurement=_measurement(threads, options, eval_options, study, kmax, params),
        method=dict(_METHOD), model_info=model_info, task_info=task_info(card, data),
        settings=settings, settings_key=key,
        command=reproduce_command(task, model, model_name, dims, options, eval_options, handle.options, ks,
                                  data.split),
        environment=_environment(), timings=timings,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if eval_options.results_dir is not None:
        save_report(report, eval_options.results_dir, plots=plots)
    return report


def save_report(report: TradeoffReport, results_dir: Path, *, plots: bool = True) -> Path:
    """Write the table and plots, then the JSON (last: its presence means the rest is complete)."""
    from vembed_bench.report.tradeoffs import write_report_files

    path = report.default_path(results_dir)
    write_report_files(report, path, plots=plots)
    return report.save(path)


class _Study:
    """The measurements of one study: every variant over one set of vectors."""

    def __init__(self, data: Any, ks: Sequence[int], main_metric: str, exclude: np.ndarray | None,
                 params: IndexParams, options: TradeoffOptions, eval_options: EvalOptions,
                 on_variant: Callable[[Variant], None] | None) -> None:
        from vembed_bench.search.recall import sample_queries

        self.data = data
        self.ks = list(ks)
        self.main_metric = main_metric
        self.exclude = exclude
        self.params = params
        self.options = options
        self.eval_options = eval_options
        self.on_variant = on_variant
        self.rows = sample_queries(len(data.queries), options.latency_queries, eval_options.seed)
        self.variants: list[Variant] = []
        self.skipped: list[dict[str, Any]] = []
        self.reference_backend = ""

    def exact(self, queries: np.ndarray, corpus: np.ndarray) -> np.ndarray:
        """Exact float32 top-k ids by the project's search (the fidelity reference)."""
        from vembed_bench.search import search

        found = search(queries, corpus, max(self.ks), backend=self.eval_options.backend, index="flat",
                       exclude=self.exclude)
        self.reference_backend = f"{found.backend}/flat (exact float32)"
        return found.indices

    def run(self, queries: np.ndarray, corpus: np.ndarray, dims: Sequence[int], fetch: int) -> None:
        from vembed_bench.evaluation.dense import truncate

        full = queries.shape[1]
        reference = self.exact(queries, corpus)
        for dim in dims:
            q, x = (queries, corpus) if dim == full else (truncate(queries, dim), truncate(corpus, dim))
            same_dim = reference if dim == full else self.exact(q, x)
            for index in self.options.indexes:
                for precision in (self.options.precisions if index != "ivfpq" else (PQ_PRECISION,)):
                    reason = skip_reason(precision, index, len(x))
                    if reason is not None:
                        self.skipped.append({"dim": dim, "precision": precision, "index": index, "reason": reason})
                        log.info("skipping d%d %s %s: %s", dim, precision, index, reason)
                        continue
                    self.add(self.measure(q, x, precision, index, fetch, reference, same_dim))
            for spec in self.options.factories:
                try:
                    variant = self.measure(q, x, FACTORY_PRECISION, spec, fetch, reference, same_dim)
                except VembedError as err:  # e.g. too few rows to train its quantisers: the rest still runs
                    self.skipped.append({"dim": dim, "precision": FACTORY_PRECISION, "index": spec,
                                         "reason": str(err)})
                    log.warning("skipping d%d %s: %s", dim, spec, err)
                    continue
                self.add(variant)

    def add(self, variant: Variant) -> None:
        self.variants.append(variant)
        if self.on_variant is not None:
            self.on_variant(variant)

    def measure(self, q: np.ndarray, x: np.ndarray, precision: str, index: str, fetch: int,
                reference: np.ndarray, same_dim: np.ndarray) -> Variant:
        from vembed_bench.metrics import score_indices
        from vembed_bench.search.recall import recall_at_k
        from vembed_bench.search.timing import latency, throughput

        log.info("measuring d%d %s %s", x.shape[1], precision, index)
        start = time.perf_counter()
        built = build(x, precision, index, self.params, fetch)
        build_seconds = time.perf_counter() - start
        k = max(self.ks)

        def search(batch: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
            return built.search(batch, k, exclude)[1]

        ids = search(q, self.exclude)
        scored = score_indices(ids, self.data.query_ids(), self.data.corpus_ids(), self.data.qrels, self.ks)
        return Variant(
            dim=int(x.shape[1]), precision=precision, index=index,
            main_score=scored.aggregate[self.main_metric], scores=dict(scored.aggregate),
            fidelity=_fidelity(recall_at_k(ids, reference, self.ks)),
            fidelity_same_dim=_fidelity(recall_at_k(ids, same_dim, self.ks)),
            latency=latency(search, q, self.exclude, self.rows, self.options.warmup),
            throughput=throughput(search, q, self.exclude, min_seconds=self.options.batch_seconds),
            memory=built.memory(), build_seconds=round(build_seconds, 4), exact=built.exact, params=built.params,
        )


def _fidelity(recalls: dict[int, float | None]) -> dict[str, float | None]:
    return {f"fidelity@{k}": value for k, value in recalls.items()}


def _settings(eval_options: EvalOptions, encoder_options: EncoderOptions, data: Any,
              model_info: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The identity of the encode measured: the settings of the plain ``eval`` result of it."""
    from vembed_bench.evaluation.identity import settings_key, settings_of

    settings = settings_of(eval_options.with_(index="flat"), encoder_options, limit=data.meta.get("limit"),
                           dtype=model_info.get("dtype"))
    return settings, settings_key(settings)


def _measurement(threads: int, options: TradeoffOptions, eval_options: EvalOptions, study: _Study, kmax: int,
                 params: IndexParams) -> dict[str, Any]:
    import faiss

    return {
        "clock": "time.perf_counter",
        "threads": threads,
        "threads_requested": options.threads,
        "faiss": faiss.__version__,
        "faiss_compile_options": faiss.get_compile_options().strip(),
        "latency_queries": int(len(study.rows)),
        "latency_sample_seed": eval_options.seed,
        "warmup_searches": options.warmup,
        "throughput_batch": len(study.data.queries),
        "throughput_min_seconds": options.batch_seconds,
        "quality_queries": len(study.data.queries),
        "corpus_rows": len(study.data.corpus),
        "search_depth": kmax,
        "rescore_depth": params.rescore_depth,
        "fidelity_reference": study.reference_backend,
    }


def reproduce_command(task: Any, model: Any, model_name: str | None, dims: Sequence[int],
                      options: TradeoffOptions, eval_options: EvalOptions, encoder_options: EncoderOptions,
                      ks: Sequence[int], split: str) -> str:
    """The ``vembed-bench tradeoffs`` command line of a study (a model given as an object: ``<object>``)."""
    task_ref = str(task) if isinstance(task, (str, Path)) else getattr(task, "name", str(task))
    model_ref = str(model) if isinstance(model, (str, Path)) else "<object>"
    parts = ["vembed-bench", "tradeoffs", "--task", task_ref, "--model", model_ref, "--split", split,
             "--k", ",".join(str(k) for k in ks), "--seed", str(eval_options.seed),
             "--dims", ",".join(str(d) for d in dims), "--precisions", ",".join(options.precisions),
             "--indexes", ",".join(options.indexes)]
    for spec in options.factories:
        parts += ["--factory", spec]
    if model_name:
        parts += ["--model-name", model_name]
    if eval_options.limit:
        parts += ["--limit", str(eval_options.limit)]
    if eval_options.main_metric:
        parts += ["--main-metric", eval_options.main_metric]
    defaults = TradeoffOptions()
    for name in ("rescore_factor", "latency_queries", "warmup", "threads", "hnsw_m", "ef_construction",
                 "ef_search", "nprobe"):
        if getattr(options, name) != getattr(defaults, name):
            parts += [f"--{name.replace('_', '-')}", str(getattr(options, name))]
    for name, value in sorted(encoder_options.vector_settings().items()):
        if isinstance(value, bool):
            parts += [f"--{name.replace('_', '-')}"] if value else []
        elif value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _environment() -> dict[str, Any]:
    from vembed_bench.provenance import environment

    return environment()
