"""mteb in both directions: mteb retrieval tasks as our tasks, our encoders as mteb models,
and our result files as mteb result files.

* ``loader: mteb`` task cards: see :mod:`vembed_bench.data.mteb_loader` (the
  loader lives with the other task loaders; :func:`mteb_task_data` is
  re-exported here).
* :func:`as_mteb_model` wraps any of our encoders so ``mteb.evaluate`` runs it.
* :func:`to_mteb_result` / :func:`export_mteb` write a :class:`Result` as an
  mteb ``TaskResult`` (score names ``ndcg_at_10``, ``recall_at_10``...).

mteb is optional (``pip install 'vembed-bench[mteb]'``) and imported inside
the functions only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.mteb_loader import mteb_task_data
from vembed_bench.data.mteb_loader import require_mteb as _require_mteb
from vembed_bench.data.types import Item

__all__ = ["as_mteb_model", "export_mteb", "mteb_score_name", "mteb_task_data", "to_mteb_result"]

# our metric name -> mteb's score key
_METRIC = re.compile(r"^(ndcg|recall|mrr|map)@(\d+)$")


# -- our encoder -> mteb model ------------------------------------------------------------------
def as_mteb_model(encoder: Any, *, name: str | None = None, revision: str | None = None) -> Any:
    """An mteb model (``AbsEncoder``) that encodes queries and documents with ``encoder``.

    mteb hands documents over as ``title + " " + text``; they are passed to
    ``encode_documents`` as the item's text, so our document prompt applies.
    """
    _require_mteb()
    from mteb.models.abs_encoder import AbsEncoder
    from mteb.models.model_meta import ModelMeta
    from mteb.types import PromptType

    class VembedMtebModel(AbsEncoder):
        def __init__(self) -> None:
            self.model = encoder
            label = name or getattr(encoder, "name", "vembed-model")
            self.mteb_model_meta = ModelMeta.create_empty({
                "name": label if "/" in label else f"vembed-bench/{label}",
                "revision": revision or encoder.fingerprint()[:12],
                "similarity_fn_name": "cosine",
                "framework": ["PyTorch"],
            })

        def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
                   prompt_type: Any = None, **kwargs: Any) -> np.ndarray:
            texts: list[str] = []
            for batch in inputs:
                texts.extend(str(t) for t in batch["text"])
            items = [Item(id=str(i), text=t) for i, t in enumerate(texts)]
            batch_size = int(kwargs.get("batch_size") or 32)
            if prompt_type == PromptType.query:
                return encoder.encode_queries(items, batch_size=batch_size)
            return encoder.encode_documents(items, batch_size=batch_size)

        def similarity(self, embeddings1: Any, embeddings2: Any) -> Any:
            import torch

            a = torch.as_tensor(np.asarray(embeddings1, dtype=np.float32))
            b = torch.as_tensor(np.asarray(embeddings2, dtype=np.float32))
            return a @ b.T  # rows are unit-norm: the dot product is the cosine

    return VembedMtebModel()


# -- Result -> mteb TaskResult ------------------------------------------------------------------
def mteb_score_name(metric: str) -> str | None:
    """``ndcg@10`` -> ``ndcg_at_10``; metrics mteb has no name for -> ``None``."""
    if metric == "precision@1":
        return "precision_at_1"
    match = _METRIC.match(metric)
    return f"{match.group(1)}_at_{match.group(2)}" if match else None


def to_mteb_result(result: Any, *, task_name: str | None = None) -> Any:
    """An mteb ``TaskResult`` holding ``result``'s scores under mteb's names.

    The mteb task name and dataset revision come from the task's ``meta`` when
    it was loaded from mteb, else from the card name and our data fingerprint.
    """
    _require_mteb()
    from mteb.results import TaskResult

    meta = result.task_info.get("meta") or {}
    scores: dict[str, Any] = {}
    for metric, value in result.scores.items():
        key = mteb_score_name(metric)
        if key is not None:
            scores[key] = float(value)
    main = mteb_score_name(result.main_metric)
    scores["main_score"] = float(result.scores[result.main_metric]) if main else None
    scores["hf_subset"] = meta.get("hf_subset", "default")
    scores["languages"] = result_languages(result)
    return TaskResult(
        dataset_revision=str(meta.get("dataset_revision") or result.task_info.get("data_fingerprint", "")),
        task_name=task_name or meta.get("mteb_task") or result.task,
        mteb_version=_mteb_version(),
        scores={result.split: [scores]},
        evaluation_time=float(sum(result.timings.values())),
    )


def result_languages(result: Any) -> list[str]:
    """The languages mteb needs to count a score (``get_score`` skips a result without any): the
    mteb task's own, else the task card's ``languages``, else ``und`` (undetermined)."""
    meta = result.task_info.get("meta") or {}
    card = result.task_info.get("card") or {}
    return list(meta.get("languages") or card.get("languages") or ["und"])


def export_mteb(results: Sequence[Any] | Any, out_dir: str | Path) -> list[Path]:
    """Write results as an mteb result cache: ``<out>/results/<org__model>/<revision>/<Task>.json``
    plus the ``model_meta.json`` mteb needs, so ``mteb.ResultCache(out).load_results()`` loads them
    and each ``get_score()`` equals our main score."""
    from vembed_bench.atomic import write_json

    results = list(results) if isinstance(results, (list, tuple)) else [results]
    written = []
    for result in results:
        task_result = to_mteb_result(result)
        model = result.model if "/" in result.model else f"vembed-bench/{result.model}"
        revision = str(result.model_info.get("weights_fingerprint") or result.model_info.get("fingerprint")
                       or "no_revision_available")[:12]
        folder = Path(out_dir) / "results" / model.replace("/", "__") / revision
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{task_result.task_name}.json"
        task_result.to_disk(path)
        write_json(folder / "model_meta.json", _model_meta(result, model, revision, task_result))
        written.append(path)
    return written


def _model_meta(result: Any, model: str, revision: str, task_result: Any) -> dict[str, Any]:
    """mteb's ``ModelMeta`` of the evaluated model, from what the result file records."""
    _require_mteb()
    from mteb.models.model_meta import ModelMeta, ScoringFunction

    info = result.model_info
    languages = sorted({lang for split in task_result.scores.values() for s in split for lang in s["languages"]
                        if lang != "und"})
    meta = ModelMeta.create_empty({
        "name": model, "revision": revision, "similarity_fn_name": ScoringFunction.COSINE, "framework": ["PyTorch"],
        "embed_dim": result.embedding_dim, "max_tokens": info.get("max_length"),
        "languages": languages or None, "release_date": None,
    })
    return json.loads(json.dumps(meta.to_dict(), default=str))  # enums and dates as mteb writes them


def _mteb_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mteb")
    except metadata.PackageNotFoundError:
        return None
