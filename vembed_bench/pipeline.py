"""The evaluation pipeline: task card -> data -> embeddings -> search -> metrics -> Result.

Each stage is timed, and everything that determines the numbers (model and
data fingerprints, prompts, search backend, metric definitions, seed,
versions, hardware) is recorded in the returned :class:`Result`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.cache import CachePolicy, EmbeddingCache, cache_key, manifest_key
from vembed_bench.data import TaskCard, TaskData, data_fingerprint, load_task, resolve_card
from vembed_bench.errors import VembedError
from vembed_bench.results import Result

log = logging.getLogger(__name__)

CACHE_SETTING_KEYS = ("type", "pooling", "max_length", "dtype", "normalize", "prompts",
                      "query_prompt", "document_prompt")


def evaluate(
    task: str | Path | TaskCard,
    model: Any,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    k_values: Sequence[int] | None = None,
    main_metric: str | None = None,
    backend: str = "auto",
    index: str = "flat",
    batch_size: int = 32,
    cache: CachePolicy | str = CachePolicy.USE,
    cache_dir: str | Path | None = None,
    results_dir: str | Path | None = "results",
    model_name: str | None = None,
    show_progress: bool = True,
    grid: int = 0,
    maxsim: str = "exact",
    candidate_depth: int = 256,
    **encoder_options: Any,
) -> Result:
    """Evaluate ``model`` on one split of ``task`` and return (and save) the :class:`Result`.

    ``task`` is a card name, a card path, a BEIR folder or a :class:`TaskCard`.
    ``model`` is a model folder (or hub id), or an object with an ``encode``
    method (a SentenceTransformer, or any :class:`~vembed_bench.encoders.base.Encoder`).
    ``encoder_options`` go to :func:`vembed_bench.encoders.load_encoder`
    (``model_type``, ``pooling``, ``query_prompt``, ``document_prompt``, ``max_length``,
    ``device``, ``dtype``, ``trust_remote_code``). With ``results_dir=None`` nothing is written.
    ``grid=N`` also draws N queries with their top-5 results (hits green, misses red)
    into ``<split>.grid.png`` beside the result file.

    A multi-vector (late interaction) model, i.e. a ColBERT-style folder, a
    ColPali/ColQwen2 folder, ``model_type="colbert"`` or an encoder with
    ``multi_vector = True``, goes to :func:`vembed_bench.multivector.evaluate_multivector`:
    ``maxsim`` is ``exact`` or ``faiss`` (FAISS token candidates, ``candidate_depth``
    nearest document tokens per query token, then exact MaxSim rerank); ``backend``
    and ``index`` are for single-vector models.
    """
    from vembed_bench.multivector import evaluate_multivector, is_multivector_model

    if is_multivector_model(model, encoder_options):
        return evaluate_multivector(
            task, model, split=split, limit=limit, seed=seed, k_values=k_values, main_metric=main_metric,
            search=maxsim, candidate_depth=candidate_depth, batch_size=batch_size, cache=cache,
            cache_dir=cache_dir, results_dir=results_dir, model_name=model_name, show_progress=show_progress,
            grid=grid, **encoder_options)
    if maxsim != "exact":
        raise VembedError(f"maxsim search '{maxsim}' applies to multi-vector (late interaction) models; "
                          f"{model} is single-vector (use --backend / --index for its search)")
    timings: dict[str, float] = {}
    card = task if isinstance(task, TaskCard) else resolve_card(task)
    k_values = sorted(set(k_values or card.k_values))
    main_metric = main_metric or card.main_metric
    _check_main_metric(main_metric, k_values)

    with _timed(timings, "load_task"):
        data = load_task(card, split, limit=limit, seed=seed)
    store = EmbeddingCache(Path(cache_dir) / "embeddings" if cache_dir else None, cache)
    embedded = _embed(data, model, store, timings, batch_size=batch_size, show_progress=show_progress,
                      encoder_options=encoder_options)
    queries, corpus = embedded.queries, embedded.corpus
    _check_embeddings(queries, corpus, len(data.queries), len(data.corpus))

    with _timed(timings, "search"):
        found, backend_info = _search(data, queries, corpus, max(k_values), backend, index)
    with _timed(timings, "score"):
        from vembed_bench.metrics import METRIC_DEFINITIONS, score_indices

        scored = score_indices(found.indices, data.query_ids(), data.corpus_ids(), data.qrels, k_values)

    result = Result(
        task=card.name,
        split=data.split,
        model=model_name or embedded.name or str(model),
        main_metric=main_metric,
        scores=scored.aggregate,
        per_query=scored,
        k_values=list(k_values),
        metric_definitions=dict(METRIC_DEFINITIONS),
        model_info=embedded.model_info,
        task_info=_task_info(card, data),
        search_info={**backend_info, **_search_info(found)},
        embedding_dim=int(queries.shape[1]),
        seed=seed,
        limit=limit if limit is not None else card.limit,
        timings=timings,
        environment=_environment(),
        cache={"policy": store.policy.value, "hits": store.hits, "misses": store.misses},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    save_result(result, data, found, results_dir, grid=grid, seed=seed)
    return result


def save_result(result: Result, data: TaskData, found: Any, results_dir: str | Path | None, *,
                grid: int = 0, seed: int = 0) -> None:
    """Write the result file and, with ``grid=N``, the qualitative grid beside it."""
    if results_dir is None:
        return
    result.save(result.default_path(Path(results_dir)))
    if grid:  # qualitative grid of `grid` queries and their top 5, beside the result file
        from vembed_bench.grid import save_grid

        save_grid(data, found.indices, result.default_path(Path(results_dir)).with_suffix(".grid.png"),
                  n_queries=grid, top_k=min(5, found.indices.shape[1]), seed=seed)


@dataclass
class Embedded:
    """Both sides' embeddings, and what the result file records about the encoder.

    Single-vector: ``(n, dim)`` arrays; multi-vector: lists of ``(tokens, dim)`` arrays.
    """

    queries: Any
    corpus: Any
    name: str
    model_info: dict[str, Any]


def _embed(data: TaskData, model: Any, store: EmbeddingCache, timings: dict[str, float], *,
           batch_size: int, show_progress: bool, encoder_options: dict[str, Any],
           multi: bool = False) -> Embedded:
    """Encode queries and corpus through the cache, loading the model only when needed.

    A re-run of a local model folder on the same data finds an encode manifest
    (what the encoder described itself as, and its two cache keys) and never
    imports torch or loads the weights: a cache hit costs milliseconds.
    ``multi=True`` does the same for multi-vector encoders (``encode_*_multi``,
    ragged cache entries).
    """
    contains, load = (store.contains_multi, store.load_multi) if multi else (store.contains, store.load)
    get = store.get_or_compute_multi if multi else store.get_or_compute
    options = {**encoder_options, "multi_vector": True} if multi else encoder_options
    manifest_key = _manifest_key(data, model, store, options)
    manifest = store.read_manifest(manifest_key) if manifest_key else None
    if manifest is not None and all(contains(manifest[key]) for key in ("query_key", "document_key")):
        with _timed(timings, "encode_queries"):
            queries = load(manifest["query_key"])
        with _timed(timings, "encode_corpus"):
            corpus = load(manifest["document_key"])
        return Embedded(queries, corpus, manifest["name"], manifest["model_info"])

    with _timed(timings, "load_model"):
        if multi:
            from vembed_bench.multivector import load_multivector_encoder

            encoder = load_multivector_encoder(model, show_progress=show_progress, **encoder_options)
        else:
            encoder = _load_encoder(model, show_progress=show_progress, **encoder_options)
    description = encoder.describe()
    fingerprint = encoder.fingerprint()
    settings = {key: description[key] for key in CACHE_SETTING_KEYS if key in description}
    suffix = "-multi" if multi else ""
    query_key = cache_key(fingerprint, "query" + suffix, settings, data.queries)
    document_key = cache_key(fingerprint, "document" + suffix, settings, data.corpus)
    encode_queries = encoder.encode_queries_multi if multi else encoder.encode_queries
    encode_documents = encoder.encode_documents_multi if multi else encoder.encode_documents
    with _timed(timings, "encode_queries"):
        queries = get(
            query_key, data.queries, lambda items: encode_queries(items, batch_size=batch_size),
            meta={"role": "query", "task": data.name, "split": data.split},
        )
    with _timed(timings, "encode_corpus"):
        corpus = get(
            document_key, data.corpus, lambda items: encode_documents(items, batch_size=batch_size),
            meta={"role": "document", "task": data.name},
        )
    model_info = {**description, "fingerprint": fingerprint, **_encode_stats(encoder)}
    name = getattr(encoder, "name", None) or ""
    if manifest_key:
        store.write_manifest(manifest_key, {"name": name, "model_info": model_info,
                                            "query_key": query_key, "document_key": document_key})
    return Embedded(queries, corpus, name, model_info)


def _manifest_key(data: TaskData, model: Any, store: EmbeddingCache,
                  encoder_options: dict[str, Any]) -> str | None:
    """Key of the encode manifest: folder content, options, machine kind and items.

    Only local folders qualify (their content digest is cached by file stat, so
    it is cheap); objects and hub ids always go through the encoder. Whether a
    GPU is present is part of the key because it changes the default dtype.
    """
    if store.policy is not CachePolicy.USE or not isinstance(model, (str, Path)) or not Path(model).is_dir():
        return None
    from vembed_bench.data.loading import items_fingerprint
    from vembed_bench.encoders.fingerprint import folder_digest

    gpu_present = any(Path("/dev").glob("nvidia[0-9]*"))
    return manifest_key(folder_digest(model), encoder_options, gpu_present,
                        items_fingerprint(data.queries), items_fingerprint(data.corpus))


def _encode_stats(encoder: Any) -> dict[str, Any]:
    """What an encoder counted while encoding (e.g. skipped bad images), if it counts anything."""
    stats = getattr(encoder, "encode_stats", None)
    return {"encode_stats": stats()} if callable(stats) else {}


def _load_encoder(model: Any, **options: Any):
    from vembed_bench.encoders import load_encoder

    return load_encoder(model, **options)


def _search(data: TaskData, queries: np.ndarray, corpus: np.ndarray, k: int, backend: str, index: str):
    from vembed_bench.search import resolve_backend, search

    exclude, candidates = search_constraints(data)
    found = search(queries, corpus, k, backend=backend, index=index, exclude=exclude, candidates=candidates)
    return found, resolve_backend(backend).describe(index)


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


def _check_main_metric(main_metric: str, k_values: Sequence[int]) -> None:
    from vembed_bench.metrics import metric_names

    names = metric_names(k_values)
    if main_metric not in names:
        raise VembedError(f"main metric '{main_metric}' is not computed for k values {list(k_values)}; "
                          f"choose one of: {', '.join(names)}")


def _check_embeddings(queries: np.ndarray, corpus: np.ndarray, n_queries: int, n_corpus: int) -> None:
    if queries.shape[0] != n_queries or corpus.shape[0] != n_corpus:
        raise VembedError(f"encoder returned {queries.shape[0]} query / {corpus.shape[0]} document vectors "
                          f"for {n_queries} / {n_corpus} items; the encoder must return one row per item")
    if queries.shape[1] != corpus.shape[1]:
        raise VembedError(f"query and document embeddings differ in size ({queries.shape[1]} vs "
                          f"{corpus.shape[1]}); both roles must map into the same space")


def _task_info(card: TaskCard, data: TaskData) -> dict[str, Any]:
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


def _search_info(found: Any) -> dict[str, Any]:
    return {"backend": found.backend, "index": found.index, "exact": found.exact,
            "k": int(found.indices.shape[1]), **getattr(found, "info", {})}


def _environment() -> dict[str, Any]:
    from vembed_bench.provenance import environment

    return environment()


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - start, 4)
