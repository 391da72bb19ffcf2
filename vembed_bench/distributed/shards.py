"""What every kind of worker shares: the shards left to encode, a model that encodes them, and
the driver's bookkeeping as the finished shards come back and are written."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError

if TYPE_CHECKING:
    from vembed_bench.cache import EmbeddingCache
    from vembed_bench.distributed import EncodeJob, ModelRef


@dataclass(frozen=True)
class ShardTask:
    """Shard ``index`` of ``jobs[job]``: its items ``start:stop``."""

    job: int
    index: int
    start: int
    stop: int


def plan(store: "EmbeddingCache", jobs: Sequence["EncodeJob"]) -> list[ShardTask]:
    """Every shard of every job that the cache does not hold yet."""
    return [ShardTask(number, *span) for number, job in enumerate(jobs)
            for span in store.missing_shards(job.key, job.items, multi=job.multi)]


class ShardWriter:
    """The driver's side: write each finished shard into the cache, and count what was encoded."""

    def __init__(self, store: "EmbeddingCache", jobs: Sequence["EncodeJob"], tasks: Sequence[ShardTask]) -> None:
        self.store, self.jobs, self.tasks = store, jobs, tasks
        self.shards = 0
        self.items = 0

    def write(self, task: ShardTask, vectors: Any) -> None:
        job = self.jobs[task.job]
        self.store.write_shard(job.key, task.index, job.items, vectors, multi=job.multi)
        self.shards += 1
        self.items += task.stop - task.start

    def summary(self, backend: str, workers: int, **details: Any) -> dict[str, Any]:
        """What the result file records about this encode (``model_info["distributed_encode"]``)."""
        return {"backend": backend, "workers": workers, **details, "shards": self.shards, "items": self.items}

    def interrupted(self, what: str, err: BaseException) -> VembedError:
        """One line for a failure mid-encode; the shards already written stay for the re-run."""
        cause = vembed_cause(err)
        if cause is not None:
            return cause
        text = " ".join(str(err).split())[:300] or type(err).__name__
        return VembedError(f"{what} failed ({type(err).__name__}: {text}); the {self.shards} of {len(self.tasks)} "
                           "shards already written are kept and a re-run resumes from them")


def vembed_cause(err: BaseException) -> VembedError | None:
    """The :class:`VembedError` a worker raised, unwrapped from what carried it back: Ray wraps it
    in its own errors, and one raised while an actor started survives only as traceback text."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, VembedError):
            return VembedError(str(current.args[0]) if current.args else str(current))
        told = _TOLD.search(str(current))
        if told:
            return VembedError(told.group(1).strip())
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    return None


_TOLD = re.compile(r"\bVembedError: ([^\n]+)")


class ShardWorker:
    """A worker's side: the driver's model, loaded on this worker's device, encoding whole shards
    exactly as the driver would (:func:`~vembed_bench.evaluation.stages.encode_items`)."""

    def __init__(self, model: "ModelRef", device: str) -> None:
        from vembed_bench.encoders.loader import load_encoder, load_multivector_encoder

        self.model = model
        options = model.options.with_(device=device)
        load = load_multivector_encoder if model.multi_vector else load_encoder
        self.encoder = load(model.source, options)
        found = self.encoder.fingerprint()
        if found != model.fingerprint:
            raise VembedError(f"the model a worker loaded from {model.source} on {device} has fingerprint "
                              f"{found[:12]}, the driver's has {model.fingerprint[:12]}: give every worker the "
                              "same model files and the same vembed-bench and library versions")

    def encode(self, role: str, items: Sequence[Item]) -> Any:
        from vembed_bench.evaluation.stages import VectorMemo, encode_items

        memo = VectorMemo(budget_bytes=0)  # repeats within a shard are encoded once, as on the driver
        return encode_items(self.encoder, memo, items, role, self.model.multi_vector, self.model.batch_size)


def items_to_json(items: Sequence[Item]) -> str:
    """Items as plain text for a worker on another machine (image paths must exist there too)."""
    return json.dumps([[i.id, i.text, i.title, str(i.image) if i.image is not None else None, i.instruction]
                       for i in items])


def items_from_json(text: str) -> list[Item]:
    return [Item(id=id_, text=body, title=title, image=Path(image) if image is not None else None,
                 instruction=instruction) for id_, body, title, image, instruction in json.loads(text)]
