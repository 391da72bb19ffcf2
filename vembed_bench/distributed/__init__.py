"""Distributed encoding: the shards of an embedding-cache entry encoded by several workers.

Before :func:`~vembed_bench.evaluation.stages.embed` assembles a cache entry with
``get_or_compute``, a *pre-encode* hook asks the cache which of the entry's shards
are not stored yet (:meth:`~vembed_bench.cache.EmbeddingCache.missing_shards`),
has workers encode them, and writes each finished shard from the driver
(:meth:`~vembed_bench.cache.EmbeddingCache.write_shard`) in the very format an
interrupted single-process encode leaves behind. ``get_or_compute`` then finds
every shard and only assembles the entry, so resuming, cache hits and the
single-process path all read the same files, and a run that dies mid-way
resumes from the shards already written, distributed or not.

Two kinds of workers, both loading the model once each through
:func:`~vembed_bench.encoders.loader.load_encoder`:

* ``ray_encode``: a Ray Data actor pool on a local or remote Ray cluster
  (``--ray``, ``--ray-address``, ``--ray-workers``), one GPU per actor when the
  cluster has GPUs;
* ``devices``: one process per device of this machine (``--device cuda:0,cuda:1``).

Every worker checks that the model it loaded has the driver's fingerprint
(same weights and vector settings), so the vectors it returns belong to the
cache key they are written under. Importing this package imports neither Ray
nor torch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence

from vembed_bench.data.types import Item
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions, EvalOptions

if TYPE_CHECKING:
    from vembed_bench.cache import EmbeddingCache

__all__ = ["EncodeJob", "ModelRef", "PreEncode", "check_distributable", "model_ref", "pre_encoder"]


@dataclass(frozen=True)
class EncodeJob:
    """One cache entry to fill: its key, the role its items are encoded as, and the items."""

    key: str
    role: str
    items: Sequence[Item]
    multi: bool = False


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the driver's model and check it got the same one."""

    source: str
    options: EncoderOptions
    fingerprint: str
    batch_size: int | str
    """A positive int, or ``"auto"``: each worker then tunes its own (:mod:`vembed_bench.encoders.batching`)."""
    multi_vector: bool = False


class PreEncode(Protocol):
    """Fill the missing shards of ``jobs``; returns what the result records (None: nothing encoded)."""

    def __call__(self, store: "EmbeddingCache", model: ModelRef, jobs: Sequence[EncodeJob]) -> dict[str, Any] | None:
        ...


def check_distributable(source: Any) -> None:
    """Workers load the model themselves: a folder or hub id, never an in-memory object."""
    if not isinstance(source, (str, Path)):
        raise VembedError(f"{type(source).__name__} is a model object; encoding on several workers "
                          "(--ray, --device a,b) needs a model folder or hub id that each worker can load")


def model_ref(source: Any, options: EncoderOptions, encoder: Any, batch_size: int | str, *,
              multi_vector: bool = False) -> ModelRef:
    """The driver's model as workers must load it: the absolute folder (or hub id), one device
    (set per worker), no progress bars, and the dtype the driver's copy runs in, pinned so a
    worker on another kind of device computes exactly what the cache key describes."""
    check_distributable(source)
    path = Path(str(source)).expanduser()
    location = str(path.resolve()) if path.exists() else str(source)
    dtype = options.dtype
    described = encoder.describe().get("dtype")
    if dtype is None and described in ("float32", "bfloat16", "float16"):
        dtype = described
    worker = options.with_(devices=(), device=None, dtype=dtype, show_progress=False)
    return ModelRef(location, worker, encoder.fingerprint(), batch_size, multi_vector)


@contextmanager
def pre_encoder(eval_options: EvalOptions, encoder_options: EncoderOptions) -> Iterator[PreEncode | None]:
    """The pre-encode hook the options ask for (None: encode in this process), open for a run.

    ``--ray`` / ``--ray-address`` joins or starts a Ray cluster for the run;
    ``--device a,b`` starts one process per device, kept for all the run's models.
    """
    if encoder_options.skip_bad_images:
        raise VembedError("--skip-bad-images counts the skipped images in the process that encodes them, which "
                          "--ray / a device list moves to workers: not supported together yet")
    if eval_options.ray is not None:
        if encoder_options.devices:
            raise VembedError(f"--device {','.join(encoder_options.devices)} and --ray both spread the encoding; "
                              "Ray gives each worker a GPU itself: drop the device list")
        from vembed_bench.distributed.ray_encode import RayPreEncode

        with RayPreEncode.open(eval_options) as hook:
            yield hook
    elif encoder_options.devices:
        if eval_options.cache == "off":
            raise VembedError(f"--device {','.join(encoder_options.devices)} writes the encoded shards into the "
                              "embedding cache, which --cache off disables; use --cache use (or refresh)")
        from vembed_bench.distributed.devices import DevicePool

        with DevicePool(encoder_options.devices) as hook:
            yield hook
    else:
        yield None
