"""The stages every evaluation goes through, in order, each once:

load task -> load encoder (at most once per model) -> embed through the cache ->
constrain -> search -> score -> record -> save.

Dense, multi-vector, Matryoshka and suite evaluation differ only in how they
embed and search (:class:`Mode`, see ``dense.py`` and ``multivector.py``) and in
how they combine results (``matryoshka.py``, ``suites.py``); the runner
(``runner.py``) decides which pairs run. This module is the only place that
knows the order of the stages.
"""

from __future__ import annotations

import gc
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from vembed_bench.cache import CachePolicy, EmbeddingCache, cache_key, manifest_key
from vembed_bench.data import TaskCard, TaskData, data_fingerprint, load_task
from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.evaluation.identity import settings_key, settings_of
from vembed_bench.options import EncoderOptions, EvalOptions
from vembed_bench.results import Result

if TYPE_CHECKING:
    from vembed_bench.distributed import PreEncode

log = logging.getLogger("vembed_bench.run")
"""Stage messages ("loading model ...", "encoding 89 queries ..."): INFO, shown by the CLI on stderr."""

CACHE_SETTING_KEYS = ("type", "pooling", "max_length", "dtype", "normalize", "prompts",
                      "query_prompt", "document_prompt")
"""Keys of an encoder's ``describe()`` that enter its embedding-cache keys."""

MEMO_BUDGET_BYTES = 2 << 30
"""Vectors kept in memory per model for other tasks of a sweep (captions shared by text-to-image
and image-to-text, say); past this budget, the embedding cache on disk still serves them."""


@contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the wall time of a block to ``timings[stage]`` (seconds, 4 decimals)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 4)


# -- the model ------------------------------------------------------------------------------------


class VectorMemo:
    """Vectors by input key (what the model sees for an item in a role), shared by a model's tasks.

    Two (item, role) pairs with the same key get the same vector, so an item
    that two tasks share (Flickr30k's captions are text-to-image queries and
    image-to-text documents) is encoded once per sweep, and repeated inputs
    within one list are encoded once.
    """

    def __init__(self, budget_bytes: int = MEMO_BUDGET_BYTES) -> None:
        self.vectors: dict[str, Any] = {}
        self.budget = budget_bytes
        self.bytes = 0
        self.encoded = 0
        """Items actually sent to the encoder (a counter for tests and stage messages)."""

    def encode(self, encoder: Any, items: Sequence[Item], role: str,
               method: Callable[[Sequence[Item]], Any]) -> list[Any]:
        """The vectors of ``items``, encoding only the inputs not seen before."""
        keys = [input_key(encoder, item, role) for item in items]
        todo: dict[str, int] = {}
        for position, key in enumerate(keys):
            if key not in self.vectors and key not in todo:
                todo[key] = position
        fresh: dict[str, Any] = {}
        if todo:
            computed = method([items[i] for i in todo.values()])
            if len(computed) != len(todo):
                raise VembedError(f"encoder returned {len(computed)} vectors for {len(todo)} items; "
                                  "it must return one per item")
            self.encoded += len(todo)
            for key, vector in zip(todo, computed):
                fresh[key] = vector
                size = getattr(vector, "nbytes", 0)
                if self.bytes + size <= self.budget:
                    self.vectors[key] = vector
                    self.bytes += size
        return [fresh[key] if key in fresh else self.vectors[key] for key in keys]


def input_key(encoder: Any, item: Item, role: str) -> str:
    """The encoder's own key for what it computes (``input_key``), else role, id and content.

    An encoder that does not say what it computes is trusted with nothing more than
    "the same item in the same role gives the same vector".
    """
    own = getattr(encoder, "input_key", None)
    if callable(own):
        return own(item, role)
    image = ""
    if item.image is not None:
        stat = item.image.stat()
        image = f"{item.image.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return "\0".join((role, item.id, item.title, item.text, item.instruction, image))


class ModelHandle:
    """A model as the user gave it (folder, hub id or object), loaded at most once, when first needed.

    A sweep keeps one handle per model for all its tasks: a task served from the
    embedding cache never loads the model, and the first task that needs it
    loads it for the rest (``loads`` counts real loads).
    """

    def __init__(self, source: Any, options: EncoderOptions, *, name: str | None = None) -> None:
        self.source = source
        self.options = options.with_(name=name) if name else options
        self.multi_vector = _is_multivector(source, self.options)
        self.memo = VectorMemo()
        self.loads = 0
        self.load_error: BaseException | None = None
        """Set when loading failed: the model's other tasks fail at once with the same error."""
        self._encoder: Any = None
        self._identity: tuple[str, str] | None = None

    @property
    def label(self) -> str:
        return self.options.name or str(getattr(self.source, "name", None) or self.source)

    def encoder(self, timings: dict[str, float]) -> Any:
        if self.load_error is not None:
            raise self.load_error
        if self._encoder is None:
            log.info("loading model %s", self.label)
            try:
                with timed(timings, "load_model"):
                    self._encoder = _load(self.source, self.options, self.multi_vector)
            except Exception as err:
                self.load_error = err
                raise
            self.loads += 1
        return self._encoder

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def identity(self) -> tuple[str, str]:
        """(display name, weights fingerprint) without loading weights where possible."""
        if self._identity is None:
            self._identity = _identity(self)
        return self._identity

    def close(self) -> None:
        """Drop the model (and its memo) so the next model of a sweep has the memory."""
        self._encoder = None
        self.memo = VectorMemo()
        gc.collect()
        try:
            import sys

            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - freeing memory is best effort
            pass


def _is_multivector(source: Any, options: EncoderOptions) -> bool:
    from vembed_bench.encoders.loader import is_multivector_model

    return is_multivector_model(source, options)


def _quiet_library_bars() -> None:
    """transformers draws a bar for reading weights (milliseconds to seconds); ours say more."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _load(source: Any, options: EncoderOptions, multi_vector: bool) -> Any:
    from vembed_bench.encoders.loader import load_encoder, load_multivector_encoder

    _quiet_library_bars()
    return load_multivector_encoder(source, options) if multi_vector else load_encoder(source, options)


def _identity(handle: ModelHandle) -> tuple[str, str]:
    from vembed_bench.encoders.identity import model_identity

    identity = model_identity(handle.source, handle.options)
    if identity.weights_digest is None:  # a hub id not downloaded yet, or an object: ask the encoder
        encoder = handle.encoder({})
        return handle.options.name or encoder.name, weights_digest(encoder)
    return handle.options.name or identity.name, identity.weights_digest


# -- embedding ------------------------------------------------------------------------------------


@dataclass
class Embedded:
    """Both sides' embeddings, and what the result file records about the encoder.

    Single-vector: ``(n, dim)`` arrays; multi-vector: lists of ``(tokens, dim)`` arrays.
    """

    queries: Any
    corpus: Any
    name: str
    model_info: dict[str, Any]


def embed(data: TaskData, handle: ModelHandle, store: EmbeddingCache, timings: dict[str, float], *,
          batch_size: int | str, pre_encode: "PreEncode | None" = None) -> Embedded:
    """Encode queries and corpus through the cache, loading the model only when needed.

    A re-run of a local model folder on the same data finds an encode manifest
    (keyed by the folder's content, every encoder option, the machine kind and the
    items) naming the encoder's description and its two cache entries: a full hit
    loads no model and imports no torch. With ``pre_encode`` (``--ray``, a device
    list), workers first fill the entries' missing shards and this process only
    assembles them (:mod:`vembed_bench.distributed`).
    """
    multi = handle.multi_vector
    contains = store.contains_multi if multi else store.contains
    key = _manifest_key(data, handle, store)
    cached = _from_manifest(data, handle, store, timings, key)
    if cached is not None:
        return cached

    encoder = handle.encoder(timings)
    description = encoder.describe()
    fingerprint = encoder.fingerprint()
    settings = {k: description[k] for k in CACHE_SETTING_KEYS if k in description}
    suffix = "-multi" if multi else ""
    keys = {role: cache_key(fingerprint, role + suffix, settings, items)
            for role, items in (("query", data.queries), ("document", data.corpus))}
    roles = (("query", data.queries, "encode_queries"), ("document", data.corpus, "encode_corpus"))
    distributed = None
    if pre_encode is not None:
        from vembed_bench.distributed import EncodeJob, model_ref

        jobs = [EncodeJob(keys[role], role, items, multi) for role, items, _ in roles if not contains(keys[role])]
        if jobs:
            with timed(timings, "encode_distributed"):
                distributed = pre_encode(store, model_ref(handle.source, handle.options, encoder, batch_size,
                                                          multi_vector=multi), jobs)
    get = store.get_or_compute_multi if multi else store.get_or_compute
    from vembed_bench.encoders.batching import tuner_for

    tuner = tuner_for(encoder, batch_size)
    calls = tuner.calls
    encoded: dict[str, Any] = {}
    for role, items, stage in roles:
        with timed(timings, stage):
            if distributed is None and not contains(keys[role]):
                log.info("encoding %d %s", len(items), "queries" if role == "query" else "documents")
            encoded[role] = get(keys[role], items,
                                lambda chunk, r=role: encode_items(encoder, handle.memo, chunk, r, multi, batch_size),
                                meta={"role": role, "task": data.name, "split": data.split})
    model_info = {**description, "fingerprint": fingerprint, "weights_fingerprint": weights_digest(encoder),
                  **_encode_stats(encoder)}
    if tuner.calls > calls:  # the batch size that computed these vectors (a later cache hit reads it back)
        model_info["batching"] = tuner.record()
    name = getattr(encoder, "name", None) or ""
    if key:
        store.write_manifest(key, {"name": name, "model_info": model_info,
                                   "query_key": keys["query"], "document_key": keys["document"]})
    if distributed:  # this run's, not the manifest's: a later cache hit encoded nothing
        model_info = {**model_info, "distributed_encode": distributed}
    return Embedded(encoded["query"], encoded["document"], name, model_info)


def encode_items(encoder: Any, memo: VectorMemo, items: Sequence[Item], role: str, multi: bool,
                 batch_size: int | str) -> Any:
    """The vectors of ``items`` as one cache shard holds them: an ``(n, dim)`` float32 array, or a
    list of ``(tokens, dim)`` matrices. Distributed workers call this too, so a shard is encoded
    the same way (same batches) wherever it is encoded. ``batch_size="auto"``: the encoder's
    :class:`~vembed_bench.encoders.batching.BatchTuner` picks it, and a call that runs out of
    memory is dropped whole and made again with half the batch size."""
    from vembed_bench.encoders.batching import tuner_for

    tuner = tuner_for(encoder, batch_size)

    def method(todo: Sequence[Item]) -> Any:
        return tuner.run(lambda size: _encode_method(encoder, role, multi, size)(todo))

    return _stack(memo.encode(encoder, items, role, method), multi)


def weights_digest(encoder: Any) -> str:
    """The digest of the encoder's weights alone; a user's object that cannot tell gets its fingerprint."""
    own = getattr(encoder, "weights_digest", None)
    digest = own() if callable(own) else None
    return digest or encoder.fingerprint()


def _encode_method(encoder: Any, role: str, multi: bool, batch_size: int) -> Callable[[Sequence[Item]], Any]:
    name = {("query", False): "encode_queries", ("document", False): "encode_documents",
            ("query", True): "encode_queries_multi", ("document", True): "encode_documents_multi"}[(role, multi)]
    method = getattr(encoder, name)
    return lambda items: method(items, batch_size=batch_size)


def _stack(vectors: list[Any], multi: bool) -> Any:
    if multi:
        return vectors
    if not vectors:
        return np.zeros((0, 0), dtype=np.float32)
    return np.ascontiguousarray(np.stack(vectors), dtype=np.float32)


def cached_embeddings(data: TaskData, handle: ModelHandle, store: EmbeddingCache,
                      timings: dict[str, float]) -> Embedded | None:
    """The embeddings :func:`embed` would return from a full cache hit (no model loaded), else None.

    Callers that must check the vectors' shape before paying for an encode (``tradeoffs --dims``)
    look here first.
    """
    return _from_manifest(data, handle, store, timings, _manifest_key(data, handle, store))


def _from_manifest(data: TaskData, handle: ModelHandle, store: EmbeddingCache, timings: dict[str, float],
                   key: str | None) -> Embedded | None:
    multi = handle.multi_vector
    contains, load = (store.contains_multi, store.load_multi) if multi else (store.contains, store.load)
    manifest = store.read_manifest(key) if key else None
    if manifest is None or not all(contains(manifest[k]) for k in ("query_key", "document_key")):
        return None
    log.info("embeddings of %s on %s found in the cache", handle.label, data.name)
    with timed(timings, "encode_queries"):
        queries = load(manifest["query_key"])
    with timed(timings, "encode_corpus"):
        corpus = load(manifest["document_key"])
    return Embedded(queries, corpus, manifest["name"], manifest["model_info"])


def _manifest_key(data: TaskData, handle: ModelHandle, store: EmbeddingCache) -> str | None:
    """Key of the encode manifest: folder content, every encoder option, machine kind and items.

    Only local folders qualify (their content digest is cached by file stat, so
    it is cheap); objects and hub ids always go through the encoder. Every option
    that can change a vector is part of the key, so a re-run with another prompt
    or pooling never reads the previous run's vectors.
    """
    model = handle.source
    if store.policy is not CachePolicy.USE or not isinstance(model, (str, Path)) or not Path(model).is_dir():
        return None
    from vembed_bench.data.loading import items_fingerprint
    from vembed_bench.encoders.fingerprint import folder_digest
    from vembed_bench.evaluation.identity import gpu_present

    options = handle.options.vector_settings()
    return manifest_key(folder_digest(model), options, handle.multi_vector, gpu_present(),
                        items_fingerprint(data.queries), items_fingerprint(data.corpus))


def _encode_stats(encoder: Any) -> dict[str, Any]:
    """What an encoder counted while encoding (e.g. skipped bad images), if it counts anything."""
    stats = getattr(encoder, "encode_stats", None)
    return {"encode_stats": stats()} if callable(stats) else {}


# -- constrain, search, score ------------------------------------------------------------------------


def search_constraints(data: TaskData) -> tuple[np.ndarray | None, list[np.ndarray] | None]:
    """Corpus positions to leave out (each query's own item, with ``exclude_self``) and to keep
    (per-query candidate lists, as in MMEB), in the form every search backend takes."""
    position = {doc_id: i for i, doc_id in enumerate(data.corpus_ids())}
    exclude = None
    if data.exclude_self:
        exclude = np.array([position.get(qid, -1) for qid in data.query_ids()], dtype=np.int64)
    candidates = None
    if data.candidates is not None:
        candidates = [np.array([position[d] for d in data.candidates[qid]], dtype=np.int64)
                      for qid in data.query_ids()]
    return exclude, candidates


class Mode(Protocol):
    """How one kind of model is embedded and searched (dense vectors, token matrices...)."""

    multi_vector: bool
    dim: int | None
    """Matryoshka: keep this many leading dimensions (None: all)."""

    def prepare(self, embedded: Embedded, data: TaskData) -> Embedded:
        """Check the embeddings against the data (and transform them, e.g. truncate)."""
        ...

    def search(self, embedded: Embedded, data: TaskData, k: int, options: EvalOptions) -> tuple[Any, dict[str, Any]]:
        """Top-k corpus positions per query, and the search provenance for the result file."""
        ...

    def exact_reference(self, embedded: Embedded, data: TaskData, k: int, rows: np.ndarray,
                        options: EvalOptions) -> tuple[np.ndarray, str]:
        """Exact top-k corpus positions of the queries at ``rows``, and what computed them: the
        reference an approximate search's recall is measured against."""
        ...

    def embedding_dim(self, embedded: Embedded) -> int:
        ...


def check_main_metric(main_metric: str, k_values: Sequence[int]) -> None:
    from vembed_bench.metrics import metric_names

    names = metric_names(k_values)
    if main_metric not in names:
        raise VembedError(f"main metric '{main_metric}' is not computed for k values {list(k_values)}; "
                          f"choose one of: {', '.join(names)}")


# -- one pair ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the pairs of one run share: the cache and the place results go."""

    options: EvalOptions
    pre_encode: "PreEncode | None" = None
    """Workers that fill missing cache shards before this process assembles them (None: no workers)."""
    store: EmbeddingCache = field(init=False)

    def __post_init__(self) -> None:
        root = Path(self.options.cache_dir) / "embeddings" if self.options.cache_dir else None
        self.store = EmbeddingCache(root, self.options.cache)


def task_plan(card: TaskCard, options: EvalOptions, extra_ks: Sequence[int] = ()) -> tuple[list[int], str]:
    """The K values and main metric of a task under these options, checked before any work."""
    ks = sorted({*(options.k_values or card.k_values), *extra_ks})
    main_metric = options.main_metric or card.main_metric
    check_main_metric(main_metric, ks)
    return ks, main_metric


def load_data(card: TaskCard, options: EvalOptions, timings: dict[str, float]) -> TaskData:
    with timed(timings, "load_task"):
        return load_task(card, options.split, limit=options.limit, seed=options.seed)


def evaluate_pair(card: TaskCard, data: TaskData, handle: ModelHandle, mode: Mode, context: Context, *,
                  timings: dict[str, float], extra_ks: Sequence[int] = ()) -> "Scored":
    """Embed, search, score and record one model on one loaded task split (not saved)."""
    options = context.options
    ks, main_metric = task_plan(card, options, extra_ks)
    store = context.store
    hits, misses = store.hits, store.misses
    embedded = embed(data, handle, store, timings, batch_size=options.batch_size, pre_encode=context.pre_encode)
    if mode.dim is not None and mode.dim == mode.embedding_dim(embedded):
        mode = type(mode)(dim=None)  # all dimensions kept: the plain result, not a copy labelled dim N
    embedded = mode.prepare(embedded, data)
    log.info("searching %d queries x %d documents", len(data.queries), len(data.corpus))
    with timed(timings, "search"):
        found, search_info = mode.search(embedded, data, max(ks), options)
    if not found.exact:
        with timed(timings, "ann_recall"):
            search_info.update(ann_recall(mode, embedded, data, found, ks, options))
    with timed(timings, "score"):
        from vembed_bench.metrics import METRIC_DEFINITIONS, score_indices

        scored = score_indices(found.indices, data.query_ids(), data.corpus_ids(), data.qrels, ks)
    model_info = dict(embedded.model_info)
    if mode.dim is not None:
        model_info["matryoshka_dim"] = mode.dim
    limit = data.meta.get("limit")
    settings = settings_of(options, handle.options, multi_vector=mode.multi_vector, dim=mode.dim,
                           dtype=model_info.get("dtype"), limit=limit)
    result = Result(
        task=card.name,
        split=data.split,
        model=handle.options.name or embedded.name or str(handle.source),
        main_metric=main_metric,
        scores=scored.aggregate,
        per_query=scored,
        k_values=list(ks),
        metric_definitions=dict(METRIC_DEFINITIONS),
        model_info=model_info,
        task_info=task_info(card, data),
        search_info=search_info,
        embedding_dim=mode.embedding_dim(embedded),
        seed=options.seed,
        limit=limit,
        timings=timings,
        environment=_environment(),
        cache={"policy": store.policy.value, "hits": store.hits - hits, "misses": store.misses - misses},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        settings=settings,
        settings_key=settings_key(settings),
    )
    attach_reference(result, card, options.reference_model)
    return Scored(result, found, data)


def attach_reference(result: Any, card: TaskCard, reference_model: str | None) -> None:
    """Set ``result.reference`` when the card publishes scores of this model (named by
    ``--reference-model`` or by the result's display name) for this split."""
    if not card.references:
        return
    from vembed_bench.data.references import find_reference, parse_references
    from vembed_bench.report.references import compare

    reference = find_reference(parse_references(card.references, card.path or card.name),
                               [reference_model, result.model], result.split)
    if reference is not None:
        result.reference = compare(result, reference)


@dataclass
class Scored:
    """A result with what produced it: the ranked lists (for predictions and grids) and the data."""

    result: Result
    found: Any
    data: TaskData


def save(scored: Scored, options: EvalOptions) -> Path | None:
    """Write the result file and, as asked, its TREC run file and its retrieval grid beside it.

    The result file is written last, so its presence means everything beside it is complete.
    """
    if options.results_dir is None:
        return None
    result, found, data = scored.result, scored.found, scored.data
    path = result.default_path(options.results_dir)
    if options.save_predictions:
        from vembed_bench.evaluation.predictions import write_trec_run

        write_trec_run(path.with_suffix(".trec"), data.query_ids(), data.corpus_ids(), found,
                       run_name=result.model)
    if options.grid:
        from vembed_bench.report.grid import save_grid

        save_grid(data, found.indices, path.with_suffix(".grid.png"), n_queries=options.grid,
                  top_k=min(5, found.indices.shape[1]), seed=options.seed)
    result.save(path)  # last: its presence means the pair is complete
    return path


def task_info(card: TaskCard, data: TaskData) -> dict[str, Any]:
    return {
        "card": card.to_dict(),
        "data_fingerprint": data_fingerprint(data),
        "n_queries": len(data.queries),
        "n_corpus": len(data.corpus),
        "n_relevant": sum(sum(1 for g in docs.values() if g > 0) for docs in data.qrels.values()),
        "skipped_queries_without_relevant": data.skipped_queries,
        "exclude_self": data.exclude_self,
        "per_query_candidates": data.candidates is not None,
        "modalities": dict(data.modalities()),
        "meta": data.meta,
    }


def ann_recall(mode: Mode, embedded: Embedded, data: TaskData, found: Any, ks: Sequence[int],
               options: EvalOptions) -> dict[str, Any]:
    """Recall@k of an approximate search against exact search on a seeded sample of its queries
    (see :mod:`vembed_bench.search.recall`), as ``search_info`` entries."""
    from vembed_bench.search.recall import RECALL_SAMPLE, recall_at_k, recall_record, sample_queries

    rows = sample_queries(found.indices.shape[0], getattr(mode, "recall_sample", RECALL_SAMPLE), options.seed)
    log.info("measuring the recall of the approximate search on %d queries", len(rows))
    exact, reference = mode.exact_reference(embedded, data, max(ks), rows, options)
    return recall_record(recall_at_k(found.indices[rows], exact, ks), len(rows), options.seed, reference)


def search_info(found: Any) -> dict[str, Any]:
    return {"backend": found.backend, "index": found.index, "exact": found.exact,
            "k": int(found.indices.shape[1]), **getattr(found, "info", {})}


def _environment() -> dict[str, Any]:
    from vembed_bench.provenance import environment

    return environment()
