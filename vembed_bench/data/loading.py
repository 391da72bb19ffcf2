"""From a task card to :class:`TaskData`: the loader registry and query sampling.

Loaders are entries of :data:`LOADERS`, looked up by the card's ``loader``
name. The built-in ones are declared below, lazily (``"module:function"``), so
importing this module (and the CLI's ``--help``) stays light; plugins add
theirs with ``LOADERS.register`` / ``LOADERS.lazy`` (or :func:`register_loader`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

import numpy as np

from vembed_bench.data.beir import load_beir
from vembed_bench.data.cards import TaskCard, resolve_param_path
from vembed_bench.data.types import Item, TaskData
from vembed_bench.errors import VembedError
from vembed_bench.registry import Registry

Loader = Callable[[TaskCard, str], TaskData]
LOADERS: Registry[Loader] = Registry("loader")
"""``loader: NAME`` in a task card -> ``loader(card, split) -> TaskData``."""


def register_loader(name: str) -> Callable[[Loader], Loader]:
    """Decorator: make ``loader: NAME`` in a task card call this function (``LOADERS.register``)."""
    return LOADERS.register(name)


@LOADERS.register("beir")
def _beir_loader(card: TaskCard, split: str) -> TaskData:
    if "path" not in card.params:
        raise VembedError(f"{card.path}: a 'beir' card needs params.path (the dataset folder)")
    root = resolve_param_path(str(card.params["path"]), card)
    return load_beir(root, split, name=card.name, exclude_self=card.exclude_self)


LOADERS.lazy("sop", "vembed_bench.data.image_tasks:sop_loader")
LOADERS.lazy("karpathy", "vembed_bench.data.image_tasks:karpathy_loader")
LOADERS.lazy("beir_root", "vembed_bench.data.image_tasks:beir_root_loader")
LOADERS.lazy("mmeb", "vembed_bench.data.mmeb:mmeb_loader")
LOADERS.lazy("mteb", "vembed_bench.data.mteb_loader:mteb_loader")


def load_task(card: TaskCard, split: str | None = None, *, limit: int | None = None, seed: int = 0) -> TaskData:
    """Load ``split`` (default: the card's first) and apply the query limit."""
    if card.loader == "suite":
        raise VembedError(f"task '{card.name}' is a suite of several tasks, not one task; evaluate it with "
                          f"`vembed-bench eval --task {card.name}` or vembed_bench.evaluate()")
    split = split or card.splits[0]
    if split not in card.splits:
        raise VembedError(f"task '{card.name}' has no split '{split}'; splits: {', '.join(card.splits)}")
    if card.loader not in LOADERS:
        known = ", ".join(sorted(LOADERS.names()))
        raise VembedError(f"{card.path or card.name}: unknown loader '{card.loader}'; known: {known}")
    data = LOADERS.get(card.loader)(card, split)
    limit = limit if limit is not None else card.limit
    return sample_queries(data, limit, seed) if limit else data


def sample_queries(data: TaskData, limit: int, seed: int) -> TaskData:
    """Keep ``limit`` queries drawn with ``seed`` (like mteb's ``limits``), in original order."""
    if limit >= len(data.queries):
        return data
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(data.queries), size=limit, replace=False))
    queries = [data.queries[i] for i in keep]
    qrels = {q.id: data.qrels[q.id] for q in queries}
    candidates = None if data.candidates is None else {q.id: data.candidates[q.id] for q in queries}
    meta = dict(data.meta, limit=limit, limit_seed=seed)
    return TaskData(
        name=data.name, split=data.split, queries=queries, corpus=data.corpus, qrels=qrels,
        root=data.root, exclude_self=data.exclude_self, candidates=candidates,
        skipped_queries=data.skipped_queries, meta=meta,
    )


def items_fingerprint(items: list[Item]) -> str:
    """Content hash of items as the encoder sees them: ids, titles, texts, instructions, image bytes.

    An image counts by the sha256 of its bytes (not its name or size: a photo
    replaced by another of the same size must not reuse a stale embedding);
    digests are memoised by :mod:`vembed_bench.filehash`, so unchanged files are
    not read again.
    """
    from vembed_bench.filehash import file_digests

    images = iter(file_digests(item.image for item in items if item.image is not None))
    digest = hashlib.sha256()
    for item in items:
        image = None if item.image is None else {"sha256": next(images)}
        digest.update(json.dumps([item.id, item.title, item.text, item.instruction, image]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def data_fingerprint(data: TaskData) -> str:
    """Content hash of everything that determines the scores: queries, corpus, qrels, options."""
    digest = hashlib.sha256()
    digest.update(items_fingerprint(data.queries).encode())
    digest.update(items_fingerprint(data.corpus).encode())
    digest.update(json.dumps(data.qrels, sort_keys=True).encode())
    digest.update(json.dumps([data.exclude_self, data.candidates], sort_keys=True).encode())
    return digest.hexdigest()
