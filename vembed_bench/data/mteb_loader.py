"""``loader: mteb`` task cards: mteb retrieval tasks as our :class:`TaskData`.

``params: {name: T2Retrieval}``: the task comes from the ``mteb`` package's own
definition (its data from the Hugging Face hub, through mteb's loader), and is
searched and scored by our pipeline, so ``--limit``, the cache, provenance and
reports work as for any card. Any mteb retrieval task works the same way.
``params: {beir_path: DIR}`` builds the task from a local BEIR folder instead
(:func:`~vembed_bench.data.mteb_local.beir_as_mteb_task`), which runs offline;
tests use it.

mteb is optional (``pip install 'vembed-bench[mteb]'``) and imported inside
the functions only. The other direction (our encoders and results as mteb's)
is :mod:`vembed_bench.integrations.mteb_tasks`.
"""

from __future__ import annotations

from typing import Any

from vembed_bench.data.cards import TaskCard, resolve_param_path
from vembed_bench.data.types import Item, TaskData
from vembed_bench.errors import VembedError

__all__ = ["mteb_loader", "mteb_task_data", "require_mteb"]


def require_mteb() -> Any:
    """The ``mteb`` module, or a one-line error saying how to install it."""
    try:
        import mteb
    except ImportError as err:
        raise VembedError("mteb is not installed; install the extra with: pip install 'vembed-bench[mteb]'") from err
    return mteb


def mteb_loader(card: TaskCard, split: str) -> TaskData:
    """``loader: mteb``: the mteb task ``params.name`` (or a local BEIR folder ``params.beir_path``)."""
    params = card.params
    if "beir_path" in params:
        from vembed_bench.data.mteb_local import beir_as_mteb_task

        root = resolve_param_path(str(params["beir_path"]), card, "beir_path")
        task = beir_as_mteb_task(root, name=str(params.get("name") or card.name), split=split)
    elif "name" in params:
        mteb = require_mteb()
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
