"""Batch sizes picked from free memory (``--batch-size auto``), for every encoder and for GradCache.

A fixed batch of 32 wastes most of a large GPU and runs a 7B model out of
memory on a small one. With ``auto``:

* **GPU (CUDA, MPS, ...)**: start from a generous size (:data:`GPU_START`, or the
  size that last worked for this model on this device), run, and on an
  out-of-memory error free the allocator's cache, halve and run the *same*
  call again, down to 1 (then one :class:`~vembed_bench.errors.VembedError`
  saying the model does not fit). A failed call's output is dropped whole, so
  no item is lost or encoded twice. The size that worked is remembered in a
  small JSON memo (:data:`MEMO_NAME` under the cache home) per (model
  fingerprint, dtype, max length, device name and total memory), so the next
  run starts there. Delete the file to probe again from :data:`GPU_START`.
* **CPU**: an out-of-memory there kills the process instead of raising, so the
  size is computed up front from the available RAM (:func:`cpu_batch_size`),
  at most :data:`CPU_ENCODE_CAP` for encoding (wider CPU batches are slower).

The batch size never changes a result's identity or a cache key (it only changes
speed); the size used is recorded in the result's ``model_info["batching"]``.
One :class:`BatchTuner` per encoder object is kept for the process
(:func:`tuner_for`), so a model's later chunks and tasks start at the size found.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import weakref
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

from vembed_bench.errors import VembedError
from vembed_bench.options import AUTO, parse_batch_size

log = logging.getLogger("vembed_bench.batching")

GPU_START = 512
"""First size tried on an accelerator with nothing remembered: large enough for small encoders to
fill a big GPU; a model that needs less halves down in a few failed calls (each one batch)."""
CPU_RANGE = (8, 256)
"""CPU sizes are kept in this range: below 8 the per-batch overhead dominates, above 256 nothing is
gained (the encoders also bound the padded tokens per CPU batch)."""
CPU_ENCODE_CAP = 16
"""Most items an ``auto`` CPU *encode* batch takes, whatever the RAM allows. A CPU's matmuls are
GEMM-bound at a few sequences already, and every item is padded to its batch's longest, so wider
batches only cost: MiniLM on the FAQ corpus (2 cores, ``--cache off``) encoded in 5.0 s at 8 and 16,
6.2 s at 32, 7.5 s at 64 and 6.9-7.5 s at 256. GradCache chunks keep the RAM bound alone."""
CPU_RAM_SHARE = 0.25
"""Share of the available RAM the activations of one batch may take (the weights, the data, the
vectors and other processes need the rest)."""
ACTIVATION_WIDTH = 16
"""Hidden-size-wide tensors alive at once inside one transformer layer: its input, Q, K, V, the
attention output and the 4x-wide feed-forward before and after its activation (1+3+1+4+4 = 13),
rounded up for the residual sums and the allocator's slack."""
DEFAULT_SHAPE = (1024, 24, 512)
"""(hidden size, layers, max length) assumed when a model's config cannot be read: a BERT-large,
larger than most encoders, so the guess errs towards a smaller batch."""
MEMO_NAME = "batch_sizes.json"
_MEMO_FORMAT = 1
_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

T = TypeVar("T")


# -- choosing a size ------------------------------------------------------------------------------


def cpu_batch_size(hidden: int, layers: int, max_length: int, dtype: str = "float32", *,
                   available: int | None = None, training: bool = False) -> int:
    """The CPU batch size for a transformer of this shape, from the available RAM.

    Bytes per item (one input of ``max_length`` tokens)::

        inference: value_bytes * max_length * hidden * (layers + ACTIVATION_WIDTH)
        training:  value_bytes * max_length * hidden * layers * ACTIVATION_WIDTH

    Inference keeps one hidden state per layer (models may return them all) plus the
    working set of the layer being computed; training keeps every layer's working
    set for the backward pass. The batch is ``CPU_RAM_SHARE * available //
    per_item``, rounded down to a power of two (the same ladder the GPU search
    halves along) and kept within :data:`CPU_RANGE`.
    """
    available = available_ram() if available is None else available
    value_bytes = _BYTES.get(dtype, 4)
    width = layers * ACTIVATION_WIDTH if training else layers + ACTIVATION_WIDTH
    per_item = value_bytes * max_length * hidden * width
    fits = int(CPU_RAM_SHARE * available) // max(1, per_item)
    low, high = CPU_RANGE
    return max(low, min(high, 1 << max(0, fits.bit_length() - 1) if fits else 0))


def available_ram() -> int:
    """Bytes of RAM available to new allocations: ``MemAvailable`` (Linux), else free pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return 4 << 30  # unknown platform: assume 4 GiB


def model_shape(folder: Path | str | None, max_length: Any = None) -> tuple[int, int, int]:
    """(hidden size, layers, max length) of a model: from the ``config.json`` of its folder (or a
    sub-folder of a sentence-transformers layout; the largest tower of a two-tower model) and
    ``max_length`` when given; :data:`DEFAULT_SHAPE` for what cannot be read."""
    own = max_length
    hidden, layers, max_length = DEFAULT_SHAPE
    config = _read_config(folder)
    if config:
        towers = [config] + [v for k, v in config.items() if k.endswith("_config") and isinstance(v, dict)]
        hiddens = [_first_int(t, ("hidden_size", "d_model", "n_embd", "width")) for t in towers]
        depths = [_first_int(t, ("num_hidden_layers", "n_layer", "num_layers", "layers")) for t in towers]
        hidden = max((h for h in hiddens if h), default=hidden)
        layers = max((d for d in depths if d), default=layers)
        positions = _first_int(config, ("max_position_embeddings", "n_positions"))
        max_length = min(positions, DEFAULT_SHAPE[2]) if positions else max_length
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        max_length = own
    return hidden, layers, max_length


def _read_config(folder: Any) -> dict[str, Any] | None:
    if folder is None:
        return None
    folder = Path(folder)
    candidates = [folder / "config.json"] + sorted(folder.glob("*/config.json"))
    for path in candidates:
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config:
            return config
    return None


def _first_int(config: dict[str, Any], names: tuple[str, ...]) -> int | None:
    for name in names:
        value = config.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# -- the device and its memo ---------------------------------------------------------------------


def is_accelerator(device: str) -> bool:
    """Whether out-of-memory on ``device`` raises (and can be retried) rather than killing the process."""
    return not str(device or "cpu").startswith("cpu")


def device_label(device: str) -> str:
    """``"NVIDIA H200|150754820096"``: name and total bytes of a CUDA device; the device string elsewhere."""
    torch = sys.modules.get("torch")
    if torch is not None and str(device).startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index
        props = torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index)
        return f"{props.name}|{props.total_memory}"
    return str(device)


def memo_path() -> Path:
    from vembed_bench.cache_home import default_cache_dir

    return default_cache_dir() / MEMO_NAME


def memo_key(fingerprint: str, dtype: str, max_length: int | None, device: str) -> str:
    """The memo's key: what bounds a batch's memory (the model, its dtype and input length, the device)."""
    return json.dumps([fingerprint, dtype, max_length, device])


def read_memo(path: Path) -> dict[str, Any]:
    """The memo's entries; a missing file is empty, a damaged one is ignored with a warning (and
    rewritten on the next :func:`remember`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read the batch-size memo %s (%s); probing again", path, exc)
        return {}
    try:
        memo = json.loads(text)
        entries = memo["entries"]
        if memo.get("format") != _MEMO_FORMAT or not isinstance(entries, dict):
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the damaged batch-size memo %s (%s); it will be rewritten", path, exc)
        return {}
    return entries


def recall(path: Path, key: str) -> int | None:
    """The remembered batch size for ``key`` (None: none, or not a positive int)."""
    entry = read_memo(path).get(key)
    size = entry.get("batch_size") if isinstance(entry, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None


def remember(path: Path, key: str, size: int) -> None:
    """Store ``size`` for ``key`` (atomically; another process's concurrent entry may be lost,
    which only costs that process a probe next time)."""
    from vembed_bench.atomic import write_json

    entries = read_memo(path)
    entries[key] = {"batch_size": size, "updated": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        write_json(path, {"format": _MEMO_FORMAT, "entries": entries})
    except OSError as exc:  # a read-only cache home: the run goes on, the next one probes again
        log.warning("cannot write the batch-size memo %s (%s)", path, exc)


# -- running with retries ------------------------------------------------------------------------


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the ``RuntimeError`` MPS and other backends raise for it."""
    torch = sys.modules.get("torch")
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_accelerator_memory() -> None:
    """Return the failed batch's cached blocks to the device before trying a smaller one."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        mps.empty_cache()


@dataclass
class BatchTuner:
    """The batch size of one model on one device: fixed, or searched by halving on out-of-memory.

    ``source`` says where the size came from: ``fixed`` (the user's), ``memo`` (remembered),
    ``probe`` (:data:`GPU_START`), ``cpu-ram`` (:func:`cpu_batch_size`).
    """

    size: int
    source: str
    memo: Path | None = None
    key: str | None = None
    halvings: int = 0
    calls: int = 0
    """Steps that completed (the caller can tell whether anything ran since it last looked)."""
    what: str = "the model"
    """How the not-fit error names the model."""
    _remembered: int | None = None

    @property
    def retries(self) -> bool:
        return self.source in ("memo", "probe")

    def run(self, step: Callable[[int], T], *, reset: Callable[[], None] | None = None) -> T:
        """``step(size)``, run again at half the size after each out-of-memory error (only for a
        searched size); ``reset()`` undoes a failed step's side effects (e.g. gradients) first."""
        while True:
            try:
                out = step(self.size)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not (self.retries and is_out_of_memory(exc)):
                    raise
            else:
                self.calls += 1
                self._keep()
                return out
            # Past the except block, the traceback (whose frames hold the failed batch's tensors)
            # is released, so the allocator can actually give that memory back.
            free_accelerator_memory()
            if reset is not None:
                reset()
            if self.size == 1:
                raise VembedError(f"{self.what} does not fit in the device's memory even one item "
                                  "at a time; use a smaller dtype or max length (--dtype, --max-length), or a larger device")
            self.size //= 2
            self.halvings += 1
            log.info("out of memory: batch size halved to %d", self.size)

    def _keep(self) -> None:
        if self.memo is not None and self.key is not None and self._remembered != self.size:
            remember(self.memo, self.key, self.size)
            self._remembered = self.size

    def info(self) -> dict[str, Any]:
        """What a result or a training log records about the batch size."""
        return {"batch_size": self.size, "mode": "fixed" if self.source == "fixed" else AUTO,
                "source": self.source, "halvings": self.halvings}

    def record(self) -> dict[str, Any]:
        """:meth:`info`, also logged (shown at ``-v``)."""
        log.info("batch size %d (%s%s)", self.size, self.source,
                 f", halved {self.halvings} time(s) on out-of-memory" if self.halvings else "")
        return self.info()


def new_tuner(requested: int | str, device: str, *, key: str | None, shape: tuple[int, int, int],
              dtype: str, training: bool = False, memo: Path | None = None, start: int = GPU_START,
              what: str = "the model") -> BatchTuner:
    """A tuner for ``requested`` (an int is kept as is) on ``device``: from the RAM on CPU, else from
    the memo entry ``key`` or ``start``."""
    requested = parse_batch_size(requested)
    if requested != AUTO:
        return BatchTuner(int(requested), "fixed", what=what)
    if not is_accelerator(device):
        size = cpu_batch_size(*shape, dtype, training=training)
        if not training:
            size = min(size, CPU_ENCODE_CAP)
        log.info("batch size %d from the available RAM (model %s)", size, "x".join(map(str, shape)))
        return BatchTuner(size, "cpu-ram", what=what)
    memo = memo or memo_path()
    known = recall(memo, key) if key else None
    tuner = BatchTuner(known or start, "memo" if known else "probe", memo=memo, key=key, what=what,
                       _remembered=known)
    log.info("batch size starts at %d (%s) on %s", tuner.size, tuner.source, device)
    return tuner


_TUNERS: "weakref.WeakKeyDictionary[Any, BatchTuner]" = weakref.WeakKeyDictionary()


def tuner_for(encoder: Any, requested: int | str) -> BatchTuner:
    """The encoder's tuner for this process (kept while the encoder lives; a new one for an object
    that cannot be weakly referenced, or when the requested size changes)."""
    requested = parse_batch_size(requested)
    try:
        tuner = _TUNERS.get(encoder)
    except TypeError:
        tuner = None
    if tuner is not None and (tuner.source == "fixed") == (requested != AUTO) \
            and (requested == AUTO or tuner.size == requested):
        return tuner
    device = str(getattr(encoder, "device", "cpu") or "cpu")
    dtype = str(getattr(encoder, "dtype", "float32") or "float32")
    max_length = getattr(encoder, "max_length", None)
    shape = model_shape(getattr(encoder, "folder", None), max_length) if requested == AUTO else DEFAULT_SHAPE
    key = None
    if requested == AUTO and is_accelerator(device):
        key = memo_key(encoder.fingerprint(), dtype, max_length, device_label(device))
    tuner = new_tuner(requested, device, key=key, shape=shape, dtype=dtype,
                      what=getattr(encoder, "name", None) or "the model")
    try:
        _TUNERS[encoder] = tuner
    except TypeError:
        pass
    return tuner
