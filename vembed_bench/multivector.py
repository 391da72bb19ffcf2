"""Evaluating late-interaction (multi-vector) models: encode tokens, MaxSim search, score.

The same stages and the same :class:`~vembed_bench.results.Result` as
:func:`vembed_bench.pipeline.evaluate`, with two differences: each item is a
``(tokens, dim)`` matrix (from the encoder's ``encode_queries_multi`` /
``encode_documents_multi``), and the search is MaxSim
(:func:`vembed_bench.search.maxsim.maxsim_search`), either exact over the whole
corpus in blocks or FAISS candidate generation plus an exact rerank. The
result's ``search_info`` records which (``search``, ``candidate_depth``).
Token matrices go through the embedding cache as ragged entries
(:meth:`vembed_bench.cache.EmbeddingCache.get_or_compute_multi`), and a
re-run of a model folder on the same data is a manifest hit that loads no model.

``vembed-bench eval`` and :func:`vembed_bench.evaluate` send a model here when
:func:`is_multivector_model` says so: a ColBERT-style folder (a
``colbert_linear.safetensors`` projection, or a PyLate folder), a ColPali /
ColQwen2 folder, ``--model-type colbert|colvision``, or an encoder object with
``multi_vector = True``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence


from vembed_bench.errors import VembedError

# --model-type values that mean late interaction (the dense loader does not know them).
MULTI_VECTOR_TYPES = {"colbert": "colbert", "pylate": "colbert", "colvision": "colvision",
                      "colpali": "colvision", "colqwen2": "colvision"}


def is_colbert_folder(folder: Path) -> bool:
    """A ColBERT projection file, or a PyLate (sentence-transformers ColBERT) module list."""
    if (folder / "colbert_linear.safetensors").is_file():
        return True
    modules = folder / "modules.json"
    try:
        return modules.is_file() and "pylate" in modules.read_text(encoding="utf-8").lower()
    except OSError:
        return False


def is_multivector_model(model: Any, options: Any = None) -> bool:
    """Whether ``model`` (a folder, hub id or encoder object) is evaluated with MaxSim."""
    if not isinstance(model, (str, Path)):
        return bool(getattr(model, "multi_vector", False)) and hasattr(model, "encode_queries_multi")
    model_type = (options or {}).get("model_type")
    if model_type:
        return str(model_type).strip().lower() in MULTI_VECTOR_TYPES
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return False
    from vembed_bench.encoders.colvision import is_colvision_folder

    return is_colbert_folder(folder) or is_colvision_folder(folder)


def load_multivector_encoder(model: Any, **options: Any) -> Any:
    """The multi-vector encoder of a folder (ColBERT-style or ColPali/ColQwen2); objects pass through."""
    if not isinstance(model, (str, Path)):
        if not hasattr(model, "encode_queries_multi"):
            raise VembedError(f"{type(model).__name__} is not a multi-vector encoder "
                              "(no encode_queries_multi / encode_documents_multi)")
        return model
    model_type = options.pop("model_type", None)
    kind = MULTI_VECTOR_TYPES.get(str(model_type).strip().lower()) if model_type else None
    if model_type and kind is None:
        raise VembedError(f"model type {model_type!r} is not multi-vector; choose one of "
                          f"{', '.join(MULTI_VECTOR_TYPES)}")
    from vembed_bench.encoders.colbert import ColBERTEncoder
    from vembed_bench.encoders.colvision import ColVisionEncoder, is_colvision_folder

    if kind is None:
        kind = "colvision" if is_colvision_folder(Path(model)) else "colbert"
    cls = ColVisionEncoder if kind == "colvision" else ColBERTEncoder
    return cls(str(model), **options)


def evaluate_multivector(
    task: Any,
    model: Any,
    *,
    split: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    k_values: Sequence[int] | None = None,
    main_metric: str | None = None,
    search: str = "exact",
    candidate_depth: int = 256,
    batch_size: int = 32,
    cache: Any = "use",
    cache_dir: str | Path | None = None,
    results_dir: str | Path | None = "results",
    model_name: str | None = None,
    show_progress: bool = True,
    grid: int = 0,
    **encoder_options: Any,
) -> Any:
    """Evaluate a multi-vector model (a ColPali/ColQwen2 folder, any other folder as a ColBERT-style
    :class:`ColBERTEncoder`, or an object with ``encode_queries_multi`` / ``encode_documents_multi``)
    on one task split. ``search``: ``exact`` or ``faiss`` (see :mod:`vembed_bench.search.maxsim`);
    ``cache`` / ``cache_dir`` as in :func:`vembed_bench.pipeline.evaluate`."""
    from vembed_bench import pipeline
    from vembed_bench.cache import EmbeddingCache
    from vembed_bench.data import TaskCard, load_task, resolve_card
    from vembed_bench.metrics import METRIC_DEFINITIONS, score_indices
    from vembed_bench.results import Result
    from vembed_bench.search.maxsim import MODES, maxsim_search

    if search not in MODES:  # before any encoding
        raise VembedError(f"unknown multi-vector search {search!r}; choose one of {', '.join(MODES)}")
    if candidate_depth < 1:
        raise VembedError(f"candidate depth {candidate_depth} must be a positive number of document tokens")
    timings: dict[str, float] = {}
    card = task if isinstance(task, TaskCard) else resolve_card(task)
    k_values = sorted(set(k_values or card.k_values))
    main_metric = main_metric or card.main_metric
    pipeline._check_main_metric(main_metric, k_values)
    with pipeline._timed(timings, "load_task"):
        data = load_task(card, split, limit=limit, seed=seed)
    if not isinstance(model, (str, Path)) and not hasattr(model, "encode_queries_multi"):
        raise VembedError(f"{type(model).__name__} is not a multi-vector encoder "
                          "(no encode_queries_multi / encode_documents_multi)")
    store = EmbeddingCache(Path(cache_dir) / "embeddings" if cache_dir else None, cache)
    embedded = pipeline._embed(data, model, store, timings, batch_size=batch_size, show_progress=show_progress,
                               encoder_options=encoder_options, multi=True)
    queries, corpus = embedded.queries, embedded.corpus
    if len(queries) != len(data.queries) or len(corpus) != len(data.corpus):
        raise VembedError(f"encoder returned {len(queries)} query / {len(corpus)} document matrices for "
                          f"{len(data.queries)} / {len(data.corpus)} items; it must return one per item")
    exclude, candidates = pipeline.search_constraints(data)
    with pipeline._timed(timings, "search"):
        found = maxsim_search(queries, corpus, max(k_values), mode=search, candidate_depth=candidate_depth,
                              exclude=exclude, candidates=candidates)
    with pipeline._timed(timings, "score"):
        scored = score_indices(found.indices, data.query_ids(), data.corpus_ids(), data.qrels, k_values)
    result = Result(
        task=card.name, split=data.split,
        model=model_name or embedded.name or str(model),
        main_metric=main_metric, scores=scored.aggregate, per_query=scored, k_values=list(k_values),
        metric_definitions=dict(METRIC_DEFINITIONS),
        model_info=embedded.model_info,
        task_info=pipeline._task_info(card, data),
        search_info={**pipeline._search_info(found), "requested_search": search,
                     "requested_candidate_depth": candidate_depth if search == "faiss" else None},
        embedding_dim=int(queries[0].shape[1]) if len(queries) else 0, seed=seed,
        limit=limit if limit is not None else card.limit, timings=timings,
        environment=pipeline._environment(),
        cache={"policy": store.policy.value, "hits": store.hits, "misses": store.misses},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    pipeline.save_result(result, data, found, results_dir, grid=grid, seed=seed)
    return result
