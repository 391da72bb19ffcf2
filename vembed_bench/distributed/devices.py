"""Data-parallel encoding on several devices of this machine, without Ray (``--device cuda:0,cuda:1``).

One worker process per device, started with ``spawn`` (CUDA cannot be used in
a forked child) and kept for the whole run: each loads a model the first time
it is given a shard of it (and drops the previous model), encodes whole
shards, and returns the vectors; this process writes each finished shard into
the embedding cache. Shards are handed out one at a time as workers become
free, so a faster device takes more of them. A worker that dies stops the
run with one line; the shards already written stay, and a re-run resumes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Sequence

from vembed_bench.distributed.shards import ShardTask, ShardWorker, ShardWriter, plan

if TYPE_CHECKING:
    from vembed_bench.cache import EmbeddingCache
    from vembed_bench.distributed import EncodeJob, ModelRef

log = logging.getLogger("vembed_bench.run")


class DevicePool:
    """The pre-encode hook of a device list; a context manager that owns the worker processes."""

    def __init__(self, devices: Sequence[str]) -> None:
        self.devices = tuple(devices)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "DevicePool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __call__(self, store: "EmbeddingCache", model: "ModelRef", jobs: Sequence["EncodeJob"]) -> dict[str, Any] | None:
        tasks = plan(store, jobs)
        if not tasks:
            return None
        log.info("encoding %d shards on %s", len(tasks), ", ".join(self.devices))
        writer = ShardWriter(store, jobs, tasks)
        pool = self._executor()
        futures: dict[Future, ShardTask] = {
            pool.submit(_encode_shard, model, jobs[task.job].role, list(jobs[task.job].items[task.start:task.stop])): task
            for task in tasks}
        pending = set(futures)
        failure: BaseException | None = None
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.cancelled():
                    continue
                error = future.exception()
                if error is None:
                    writer.write(futures[future], future.result())
                elif failure is None:
                    failure = error
                    for other in pending:  # those not started yet; running ones finish and are written
                        other.cancel()
        if failure is not None:
            what = f"encoding on {', '.join(self.devices)}"
            if isinstance(failure, BrokenProcessPool):
                self._pool = None  # unusable: the next model starts new workers
                what += (" (a worker process died: out of memory, killed, or started from a Python script "
                         "without `if __name__ == '__main__':`)")
            raise writer.interrupted(what, failure)
        return writer.summary("devices", len(self.devices), devices=list(self.devices))

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            for device in self.devices:
                queue.put(device)
            cpu_workers = sum(1 for d in self.devices if d.split(":")[0] == "cpu")
            self._pool = ProcessPoolExecutor(max_workers=len(self.devices), mp_context=context,
                                             initializer=_start_worker, initargs=(queue, cpu_workers))
        return self._pool


# -- in the worker processes ------------------------------------------------------------------------

_DEVICE: str = "cpu"
_CPU_WORKERS = 1
_LOADED: tuple["ModelRef", ShardWorker] | None = None


def _start_worker(queue: Any, cpu_workers: int) -> None:
    """Take this process's device (each worker takes one from the queue, once)."""
    global _DEVICE, _CPU_WORKERS
    _DEVICE = queue.get()
    _CPU_WORKERS = max(1, cpu_workers)


def _encode_shard(model: "ModelRef", role: str, items: list[Any]) -> Any:
    global _LOADED
    if _LOADED is None or _LOADED[0] != model:
        _LOADED = None  # drop the previous model before loading the next
        if _DEVICE.split(":")[0] == "cpu":  # CPU workers share the cores instead of each taking all
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // _CPU_WORKERS))
        _LOADED = (model, ShardWorker(model, _DEVICE))
    return _LOADED[1].encode(role, items)
