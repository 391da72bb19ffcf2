"""Encoding on a Ray cluster: a Ray Data actor pool encodes the missing shards, the driver writes them.

Each row of the dataset is one missing cache shard (its items as JSON); the
pool's actors (:class:`ShardActor`) load the model once each and encode one
shard per call, on one GPU each when the cluster has GPUs, else on CPUs; the
driver streams the finished shards back and writes them into the embedding
cache as they arrive. An actor that dies (a killed process, a lost node) is
restarted by Ray Data and its shard retried (Ray Data's default for actor
pools); a run that fails all the same keeps every shard already written for
the re-run.

Multi-node: start the cluster with ``ray start --head`` on one machine and
``ray start --address HEAD:6379`` on the others, then run ``vembed-bench eval
... --ray-address HEAD:6379`` on any of them. The model folder (or hub cache)
and the image files must be at the same paths on every node, with the same
vembed-bench installed; the cache folder only needs to be on the driver, which
writes every shard.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from vembed_bench.distributed.shards import ShardWorker, ShardWriter, items_from_json, items_to_json, plan
from vembed_bench.errors import VembedError
from vembed_bench.options import EvalOptions

if TYPE_CHECKING:
    from vembed_bench.cache import EmbeddingCache
    from vembed_bench.distributed import EncodeJob, ModelRef

log = logging.getLogger("vembed_bench.run")


def import_ray() -> Any:
    """Ray, with its ``uv run`` hook off unless the user set it: under ``uv run`` (how this project's
    Makefile runs) that hook ships the current folder to every worker and starts it with ``uv run``
    there, in a fresh environment without this package; the workers must use the installed one."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
        import ray.data  # noqa: F401 - the actor pool
    except ImportError:
        raise VembedError("--ray needs Ray: install the extra, pip install 'vembed-bench[ray]' "
                          "(uv sync --extra ray)") from None
    return ray


class RayPreEncode:
    """The pre-encode hook of ``--ray`` / ``--ray-address``."""

    def __init__(self, ray: Any, workers: int | None, show_progress: bool) -> None:
        self.ray = ray
        self.workers = workers
        self.show_progress = show_progress

    @classmethod
    @contextmanager
    def open(cls, options: EvalOptions) -> Iterator["RayPreEncode"]:
        """Join the cluster for the run (start a local one for ``"local"``); a Ray session this
        process already had is used as it is and left open."""
        ray = import_ray()
        started = False
        if not ray.is_initialized():
            local = {"num_cpus": os.cpu_count() or 1} if options.ray == "local" else {}
            try:
                ray.init(address=options.ray, include_dashboard=False, logging_level=logging.WARNING,
                         configure_logging=False, **local)
            except (ConnectionError, RuntimeError, ValueError) as err:
                first = " ".join(str(err).split())[:200]
                raise VembedError(f"--ray-address {options.ray}: cannot join the Ray cluster ({first}); "
                                  "start it with `ray start --head` or check the address") from None
            started = True
        try:
            yield cls(ray, options.ray_workers, options.show_progress)
        finally:
            if started:
                ray.shutdown()

    def __call__(self, store: "EmbeddingCache", model: "ModelRef", jobs: Sequence["EncodeJob"]) -> dict[str, Any] | None:
        tasks = plan(store, jobs)
        if not tasks:
            return None
        workers, gpus, cpus = self.resources(len(tasks))
        log.info("encoding %d shards on %d Ray worker(s) (%s)", len(tasks), workers,
                 "1 GPU each" if gpus else f"{cpus:g} CPU each")
        rows = [{"task": number, "role": jobs[task.job].role,
                 "items": items_to_json(jobs[task.job].items[task.start:task.stop])}
                for number, task in enumerate(tasks)]
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = self.show_progress
        pool = self.ray.data.ActorPoolStrategy(size=workers)
        dataset = self.ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(  # a shard a block
            ShardActor, fn_constructor_kwargs={"model": model}, batch_size=1, batch_format="numpy",
            compute=pool, num_gpus=gpus, num_cpus=cpus)
        writer = ShardWriter(store, jobs, tasks)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                for row in range(len(batch["task"])):
                    writer.write(tasks[int(batch["task"][row])], _vectors(batch, row, model.multi_vector))
        except VembedError:
            raise
        except Exception as err:  # noqa: BLE001 - Ray wraps whatever a worker raised
            raise writer.interrupted("encoding on the Ray cluster", err) from None
        return writer.summary("ray", workers, worker_device="cuda" if gpus else "cpu")

    def resources(self, shards: int) -> tuple[int, int, float]:
        """(actors, GPUs per actor, CPUs per actor): one GPU each on a cluster with GPUs (one actor
        per GPU by default), else the CPUs shared out (one actor per node by default); never more
        actors than shards."""
        available = self.ray.cluster_resources()
        nodes = [node for node in self.ray.nodes() if node.get("Alive")]
        gpus = int(available.get("GPU", 0))
        workers = self.workers or gpus or max(1, len(nodes))
        if gpus and workers > gpus:
            raise VembedError(f"--ray-workers {workers}: the Ray cluster has {gpus} GPU(s), one per worker; "
                              f"ask for at most {gpus}")
        workers = min(workers, shards)
        if gpus:
            return workers, 1, 1.0
        total = float(available.get("CPU", 1))
        largest = max((float(node.get("Resources", {}).get("CPU", 0)) for node in nodes), default=total)
        share = total / workers
        return workers, 0, share if share < 1 else float(max(1, int(min(share, largest))))


class ShardActor:
    """A Ray Data actor: the model loaded once (on the GPU Ray gave it, else the CPU), one shard per call."""

    def __init__(self, model: "ModelRef") -> None:
        import ray

        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self.worker = ShardWorker(model, device)
        self.multi = model.multi_vector

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (task,), (role,), (text,) = batch["task"], batch["role"], batch["items"]
        vectors = self.worker.encode(str(role), items_from_json(str(text)))
        if not self.multi:
            return {"task": np.array([task]), "rows": np.asarray(vectors, dtype=np.float32)[None]}
        lengths = np.array([m.shape[0] for m in vectors], dtype=np.int64)
        tokens = np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32)
        return {"task": np.array([task]), "tokens": tokens[None], "lengths": lengths[None]}


def _vectors(batch: dict[str, Any], row: int, multi: bool) -> Any:
    """One shard's vectors from a streamed batch: its rows, or its token matrices split again."""
    if not multi:
        return np.asarray(batch["rows"][row], dtype=np.float32)
    tokens, lengths = np.asarray(batch["tokens"][row], dtype=np.float32), np.asarray(batch["lengths"][row])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(len(lengths))]
