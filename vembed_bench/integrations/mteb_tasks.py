"""mteb in both directions: mteb retrieval tasks as our tasks, our encoders as mteb models,
and our result files as mteb result files.

* ``loader: mteb`` task cards (``params: {name: T2Retrieval}``): the task comes
  from the ``mteb`` package's own definition (its data from the Hugging Face
  hub, through mteb's loader), and is searched and scored by our pipeline, so
  ``--limit``, the cache, provenance and reports work as for any card. Any
  mteb retrieval task works the same way. ``params: {beir_path: DIR}`` builds
  the task from a local BEIR folder instead
  (:func:`~vembed_bench.integrations.mteb_local.beir_as_mteb_task`), which runs
  offline; tests use it.
* :func:`as_mteb_model` wraps any of our encoders so ``mteb.evaluate`` runs it.
* :func:`to_mteb_result` / :func:`export_mteb` write a :class:`Result` as an
  mteb ``TaskResult`` (score names ``ndcg_at_10``, ``recall_at_10``...).

mteb is optional (``pip install 'vembed-bench[mteb]'``) and imported inside
the functions only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.cards import TaskCard, resolve_param_path
from vembed_bench.data.loading import register_loader
from vembed_bench.data.types import Item, TaskData
from vembed_bench.errors import VembedError

# our metric name -> mteb's score key
_METRIC = re.compile(r"^(ndcg|recall|mrr|map)@(\d+)$")


def _require_mteb() -> Any:
    try:
        import mteb
    except ImportError as err:
        raise VembedError("mteb is not installed; install the extra with: pip install 'vembed-bench[mteb]'") from err
    return mteb


# -- mteb task -> TaskData ----------------------------------------------------------------------
@register_loader("mteb")
def _mteb_loader(card: TaskCard, split: str) -> TaskData:
    params = card.params
    if "beir_path" in params:
        from vembed_bench.integrations.mteb_local import beir_as_mteb_task

        root = resolve_param_path(str(params["beir_path"]), card, "beir_path")
        task = beir_as_mteb_task(root, name=str(params.get("name") or card.name), split=split)
    elif "name" in params:
        mteb = _require_mteb()
        try:
            task = mteb.get_task(str(params["name"]))
        except Exception as exc:  # unknown name: mteb raises KeyError/ValueError with suggestions
            raise VembedError(f"{card.path or card.name}: mteb has no task {params['name']!r} ({exc})") from None
    else:
        raise VembedError(f"{card.path or card.name}: an 'mteb' card needs params.name (an mteb task name)")
    return mteb_task_data(task, split, name=card.name, subset=params.get("subset"))


def mteb_task_data(task: Any, split: str, *, name: str, subset: str | None = None) -> TaskData:
    """Load an mteb ``AbsTaskRetrieval`` and turn one split (and subset) into :class:`TaskData`.

    Documents keep title and text apart (we join them as mteb does:
    ``title + " " + text``); queries whose judgements are all non-relevant are
    dropped, as our BEIR loader does.
    """
    if getattr(task.metadata, "type", None) != "Retrieval":
        raise VembedError(f"mteb task {task.metadata.name} is a {task.metadata.type} task; "
                          "only Retrieval tasks can be loaded as vembed-bench tasks")
    try:
        task.load_data()
    except Exception as exc:  # network / hub errors are the user's to fix
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VembedError(f"mteb could not load {task.metadata.name} ({type(exc).__name__}: {first}); "
                          "the data comes from the Hugging Face hub") from None
    subsets = task.dataset
    subset = subset or ("default" if "default" in subsets else next(iter(subsets)))
    if subset not in subsets or split not in subsets[subset]:
        raise VembedError(f"mteb task {task.metadata.name} has no subset {subset!r} / split {split!r}")
    data = subsets[subset][split]
    qrels_all = data["relevant_docs"]
    qrels = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels_all.items()}
    skipped = sum(1 for docs in qrels.values() if not any(g > 0 for g in docs.values()))
    qrels = {q: docs for q, docs in qrels.items() if any(g > 0 for g in docs.values())}
    corpus = [Item(id=str(row["id"]), text=str(row.get("text") or ""), title=str(row.get("title") or ""))
              for row in data["corpus"]]
    queries = [Item(id=str(row["id"]), text=_query_text(row.get("text")),
                    instruction=str(row.get("instruction") or ""))
               for row in data["queries"] if str(row["id"]) in qrels]
    meta = task.metadata
    return TaskData(
        name=name, split=split, queries=queries, corpus=corpus, qrels=qrels,
        exclude_self=bool(getattr(task, "ignore_identical_ids", False)), skipped_queries=skipped,
        meta={"mteb_task": meta.name, "dataset_revision": meta.revision, "hf_subset": subset,
              "languages": list(meta.eval_langs if isinstance(meta.eval_langs, list) else
                                meta.eval_langs.get(subset, []))},
    )


def _query_text(text: Any) -> str:
    if isinstance(text, list):  # conversational queries: turns joined
        return "; ".join(str(t) for t in text)
    return str(text or "")


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
    scores["languages"] = list(meta.get("languages") or [])
    return TaskResult(
        dataset_revision=str(meta.get("dataset_revision") or result.task_info.get("data_fingerprint", "")),
        task_name=task_name or meta.get("mteb_task") or result.task,
        mteb_version=_mteb_version(),
        scores={result.split: [scores]},
        evaluation_time=float(sum(result.timings.values())),
    )


def export_mteb(results: Sequence[Any] | Any, out_dir: str | Path) -> list[Path]:
    """Write results in mteb's results layout: ``<out>/<org__model>/<revision>/<Task>.json``."""
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    written = []
    for result in results:
        task_result = to_mteb_result(result)
        model = result.model if "/" in result.model else f"vembed-bench/{result.model}"
        revision = str(result.model_info.get("fingerprint", "no_revision_available"))[:12]
        folder = Path(out_dir) / model.replace("/", "__") / revision
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{task_result.task_name}.json"
        task_result.to_disk(path)
        written.append(path)
    return written


def _mteb_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("mteb")
    except metadata.PackageNotFoundError:
        return None
