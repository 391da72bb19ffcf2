"""Evaluating late-interaction (multi-vector) models: encode tokens, MaxSim search, score.

The same stages and the same :class:`~vembed_bench.results.Result` as
:func:`vembed_bench.pipeline.evaluate`, with two differences: each item is a
``(tokens, dim)`` matrix (from the encoder's ``encode_queries_multi`` /
``encode_documents_multi``), and the search is MaxSim
(:func:`vembed_bench.search.maxsim.maxsim_search`), either exact over the whole
corpus in blocks or FAISS candidate generation plus an exact rerank. The
result's ``search_info`` records which (``search``, ``candidate_depth``).
Token matrices are not put in the embedding cache (they are ragged).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.errors import VembedError


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
    results_dir: str | Path | None = "results",
    model_name: str | None = None,
    show_progress: bool = True,
    **encoder_options: Any,
) -> Any:
    """Evaluate a multi-vector model (a ColPali/ColQwen2 folder, any other folder as a ColBERT-style
    :class:`ColBERTEncoder`, or an
    object with ``encode_queries_multi`` / ``encode_documents_multi``) on one task split."""
    from vembed_bench import pipeline
    from vembed_bench.data import TaskCard, load_task, resolve_card
    from vembed_bench.metrics import METRIC_DEFINITIONS, score_indices
    from vembed_bench.results import Result
    from vembed_bench.search.maxsim import maxsim_search

    timings: dict[str, float] = {}
    card = task if isinstance(task, TaskCard) else resolve_card(task)
    k_values = sorted(set(k_values or card.k_values))
    main_metric = main_metric or card.main_metric
    pipeline._check_main_metric(main_metric, k_values)
    with pipeline._timed(timings, "load_task"):
        data = load_task(card, split, limit=limit, seed=seed)
    with pipeline._timed(timings, "load_model"):
        if isinstance(model, (str, Path)):
            from vembed_bench.encoders.colbert import ColBERTEncoder
            from vembed_bench.encoders.colvision import ColVisionEncoder, is_colvision_folder

            cls = ColVisionEncoder if is_colvision_folder(Path(model)) else ColBERTEncoder
            encoder = cls(str(model), show_progress=show_progress, **encoder_options)
        else:
            encoder = model
    if not hasattr(encoder, "encode_queries_multi"):
        raise VembedError(f"{type(encoder).__name__} is not a multi-vector encoder "
                          "(no encode_queries_multi / encode_documents_multi)")
    with pipeline._timed(timings, "encode_queries"):
        queries = encoder.encode_queries_multi(data.queries, batch_size=batch_size)
    with pipeline._timed(timings, "encode_corpus"):
        corpus = encoder.encode_documents_multi(data.corpus, batch_size=batch_size)
    position = {doc_id: i for i, doc_id in enumerate(data.corpus_ids())}
    exclude = None
    if data.exclude_self:
        exclude = np.array([position.get(q, -1) for q in data.query_ids()], dtype=np.int64)
    candidates = None
    if data.candidates is not None:
        candidates = [np.array([position[d] for d in data.candidates[q]], dtype=np.int64)
                      for q in data.query_ids()]
    with pipeline._timed(timings, "search"):
        found = maxsim_search(queries, corpus, max(k_values), mode=search, candidate_depth=candidate_depth,
                              exclude=exclude, candidates=candidates)
    with pipeline._timed(timings, "score"):
        scored = score_indices(found.indices, data.query_ids(), data.corpus_ids(), data.qrels, k_values)
    description = encoder.describe()
    result = Result(
        task=card.name, split=data.split,
        model=model_name or getattr(encoder, "name", None) or str(model),
        main_metric=main_metric, scores=scored.aggregate, per_query=scored, k_values=list(k_values),
        metric_definitions=dict(METRIC_DEFINITIONS),
        model_info={**description, "fingerprint": encoder.fingerprint()},
        task_info=pipeline._task_info(card, data), search_info=pipeline._search_info(found),
        embedding_dim=int(queries[0].shape[1]) if queries else 0, seed=seed,
        limit=limit if limit is not None else card.limit, timings=timings,
        environment=pipeline._environment(), cache={"policy": "off"},
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if results_dir is not None:
        result.save(result.default_path(Path(results_dir)))
    return result
