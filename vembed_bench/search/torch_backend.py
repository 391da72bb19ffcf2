"""Exact search with torch: blocked matmul + ``topk``, meant for CUDA.

Selected by ``auto`` when CUDA is available and faiss has no GPU support;
``torch:cpu`` runs it on the CPU (tests, benchmarks). ``topk`` does not define
how ties are ordered, so each block fetches k+1, re-sorts by (score desc,
position asc) with stable sorts, and flags queries whose k-th and (k+1)-th
block scores tie; those few are recomputed by a full-row stable sort. On CUDA,
TF32 matmuls are switched off for the call so scores are true float32 products.

Where the corpus lives: when it fits in half the free device memory it is
uploaded whole, and it *stays* there for later calls with the same array if
the array is read-only (a memory-mapped cache entry) or was handed to
:meth:`TorchBackend.prepare` -- the caller's promise that it does not change.
It is dropped when that array is garbage-collected, on :meth:`release`, or
when another corpus takes its place. A corpus that does not fit is streamed:
each block of rows is uploaded once and scored against every query block
before the next one (never the whole corpus per query block), and the pages
of a memory-mapped corpus are released after each block.
"""

from __future__ import annotations

import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
from vembed_bench.search.blocked import check_finite_in_blocks, is_memory_mapped, release_rows
from vembed_bench.search.base import (
    DEFAULT_MEMORY_MB,
    SearchResult,
    check_inputs,
    empty_result,
    make_result,
    memory_budget_bytes,
    positive_int_option,
    require_exact,
)

OPTIONS = ("memory_mb", "query_block", "block_rows")
CUDA_MEMORY_MB = 2048
"""Default score-block budget on CUDA (GPU memory, not host memory)."""
UPLOAD_BYTES = 64 << 20
"""Host rows copied to the device at once (a memory-mapped corpus never enters memory whole)."""


def _torch():
    import torch

    return torch


def cuda_available() -> bool:
    try:
        return bool(_torch().cuda.is_available())
    except ImportError:
        return False


@contextmanager
def _full_fp32(torch, device) -> Iterator[None]:
    """Disable TF32 matmuls on CUDA for the duration, restoring the user's setting."""
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


@dataclass
class _Running:
    """One query block's running top-k on the device, and its unresolved-tie flags."""

    values: Any
    positions: Any
    ambiguous: Any


@dataclass
class _Resident:
    """The corpus kept on the device between calls, and the array it is a copy of."""

    array: "weakref.ref[np.ndarray]"
    layout: tuple
    tensor: Any
    prepared: bool


def _layout(array: np.ndarray) -> tuple:
    """What must be unchanged for a resident copy to still be the array's (besides its values)."""
    return (array.__array_interface__["data"][0], array.shape, array.strides, array.dtype.str)


def _tensor(torch, array: np.ndarray):
    """``torch.from_numpy`` without its warning for read-only arrays (we never write to them)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class TorchBackend:
    """Exact blocked matmul + topk on a torch device (CUDA by default)."""

    name = "torch"

    @classmethod
    def available(cls) -> bool:
        """A CUDA device is usable (``torch:cpu`` must be asked for by name)."""
        return cuda_available()

    @classmethod
    def create(cls, device: str | None = None) -> "TorchBackend":
        """The backend for ``torch`` (CUDA), ``torch:cuda:N`` or ``torch:cpu``, or a one-line error."""
        try:
            torch = _torch()
        except ImportError:
            raise VembedError(
                "search backend 'torch' needs torch: install the 'torch' extra, or use 'numpy'"
            ) from None
        device = device or "cuda"
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise VembedError(
                    "search backend 'torch' needs CUDA, which is not available here; "
                    "use 'faiss' or 'numpy' (or 'torch:cpu' to force the CPU)"
                )
            try:
                dev = torch.device(device)
            except (RuntimeError, ValueError):
                raise VembedError(f"search backend 'torch' got a bad device {device!r}") from None
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise VembedError(
                    f"search backend 'torch:{device}': only {torch.cuda.device_count()} CUDA device(s)"
                )
        elif device != "cpu":
            raise VembedError(f"search backend 'torch' takes device cuda[:N] or cpu, got {device!r}")
        return cls(device)

    def __init__(self, device: str | None = None) -> None:
        torch = _torch()
        self._torch = torch
        self.device = torch.device(device or "cuda")
        self._resident: _Resident | None = None
        self.uploads = 0
        """Corpora copied to the device whole (a counter for tests and benchmarks)."""

    def search(
        self,
        queries: np.ndarray,
        corpus: np.ndarray,
        k: int,
        *,
        index: str = "flat",
        exclude: np.ndarray | None = None,
        candidates: Sequence[np.ndarray] | None = None,
        **index_options: Any,
    ) -> SearchResult:
        require_exact(self.name, index, index_options, OPTIONS)
        on_cuda = self.device.type == "cuda"
        budget = memory_budget_bytes(index_options, CUDA_MEMORY_MB if on_cuda else DEFAULT_MEMORY_MB)
        query_block = positive_int_option(index_options, "query_block", 4096 if on_cuda else 1024)
        block_rows = positive_int_option(index_options, "block_rows", 1) if "block_rows" in index_options else None
        mapped = is_memory_mapped(corpus)
        inp = check_inputs(queries, corpus, k, exclude, candidates, check_corpus_values=not mapped)
        if mapped:  # checked a block at a time, so the mapped file never is resident whole
            check_finite_in_blocks(inp.corpus)
        if inp.n_corpus == 0 or inp.n_queries == 0:
            return empty_result(inp.n_queries, inp.k, self.name, "flat", True)
        info: dict[str, Any] = {"corpus_on_device": "streamed in blocks"} if block_rows is not None else {}
        if mapped:
            info["memory_mapped"] = True
        with self._torch.inference_mode(), _full_fp32(self._torch, self.device):
            x_dev = None if block_rows is not None else self._device_corpus(corpus, inp.corpus, info)
            if inp.candidates is not None:
                scores, indices = self._candidates(inp.queries, inp.corpus, x_dev, inp.candidates, inp.k_work, budget)
            else:
                scores, indices = self._exact(
                    inp.queries, inp.corpus, x_dev, inp.k_work, inp.exclude, budget, query_block, block_rows, info
                )
        return make_result(scores, indices, inp.k, self.name, "flat", True, info)

    def describe(self, index: str = "flat") -> dict[str, Any]:
        torch = self._torch
        info: dict[str, Any] = {
            "backend": self.name,
            "library": f"torch {torch.__version__}",
            "index": "flat",
            "exact": True,
        }
        if self.device.type == "cuda":
            info["device"] = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        else:
            info["device"] = str(self.device)
            info["threads"] = torch.get_num_threads()
        return info

    # --- the corpus on the device ---

    def prepare(self, corpus: np.ndarray) -> bool:
        """Keep ``corpus`` on the device for the following searches of this very array.

        For several query sets against one corpus: it is uploaded once. The caller
        promises not to change the array in place until :meth:`release` (or the
        next ``prepare``). Returns False, keeping nothing, when it does not fit in
        half the free device memory (searches then stream it) or the device is the
        CPU (whose tensor is the array itself: nothing to keep).
        """
        self.release()
        arr = np.asarray(corpus)
        if arr.ndim != 2 or arr.dtype != np.float32 or not arr.flags.c_contiguous:
            raise VembedError("prepare() takes the C-contiguous float32 (rows, dim) corpus that will be searched")
        self._device_corpus(corpus, arr, {}, prepared=True)
        return self._resident is not None

    def release(self) -> None:
        """Drop the corpus kept on the device, if any."""
        self._resident = None

    @property
    def _copies_to_device(self) -> bool:
        """Whether the corpus on the device is a copy (CUDA); on the CPU it is the array itself,
        free to make and never worth keeping (keeping it would keep the array alive)."""
        return self.device.type != "cpu"

    def _fits(self, nbytes: int) -> bool:
        """Whether a corpus of ``nbytes`` fits comfortably (half the free memory) on the device."""
        if self.device.type != "cuda":
            return True
        free, _total = self._torch.cuda.mem_get_info(self.device)
        return nbytes <= free // 2

    def _upload(self, x: np.ndarray):
        """The whole of ``x`` on the device, copied in slices (pages of a mapped array released)."""
        torch = self._torch
        self.uploads += 1
        if self.device.type != "cuda":
            return _tensor(torch, x)
        out = torch.empty(x.shape, dtype=torch.float32, device=self.device)
        step = max(1, UPLOAD_BYTES // max(1, x.strides[0]))
        for r0 in range(0, x.shape[0], step):
            out[r0 : r0 + step].copy_(_tensor(torch, x[r0 : r0 + step]))
            release_rows(x, r0, r0 + step)
        return out

    def _device_corpus(self, original: Any, x: np.ndarray, info: dict[str, Any], prepared: bool = False):
        """The corpus on the device (kept from an earlier call when it may be), or None: stream it.

        ``original`` is the caller's array and ``x`` its validated float32 form;
        only an ``x`` that *is* the caller's memory can be kept, and only when it
        cannot change behind our back: read-only, or handed to :meth:`prepare`.
        """
        held = self._resident
        if held is not None and held.array() is original and held.layout == _layout(x):
            info["corpus_on_device"] = "kept from an earlier call"
            return held.tensor
        if not self._fits(x.nbytes):
            info["corpus_on_device"] = "streamed in blocks"
            return None
        same_memory = isinstance(original, np.ndarray) and _layout(original) == _layout(x)
        keep = self._copies_to_device and same_memory and (prepared or not original.flags.writeable)
        if keep:
            self._resident = None  # free the previous corpus before uploading this one
        tensor = self._upload(x)
        info["corpus_on_device"] = "uploaded"
        if keep:
            self._resident = _Resident(weakref.ref(original, self._forget), _layout(x), tensor, prepared)
        return tensor

    def _forget(self, ref: "weakref.ref[np.ndarray]") -> None:
        """The kept corpus's array was garbage-collected: free the device copy too."""
        if self._resident is not None and self._resident.array is ref:
            self._resident = None

    # --- exact search ---

    def _exact(
        self,
        q: np.ndarray,
        x: np.ndarray,
        x_dev: Any,
        k: int,
        exclude: np.ndarray | None,
        budget: int,
        query_block: int,
        block_rows: int | None,
        info: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        dev = self.device
        nq, n = q.shape[0], x.shape[0]
        qb = max(1, min(nq, query_block))
        cb = block_rows or max(1, min(n, budget // (4 * qb)))
        blocks = [(q0, min(nq, q0 + qb)) for q0 in range(0, nq, qb)]
        running = [
            _Running(
                torch.full((q1 - q0, 0), float("-inf"), device=dev),
                torch.full((q1 - q0, 0), -1, dtype=torch.int64, device=dev),
                torch.zeros(q1 - q0, dtype=torch.bool, device=dev),
            )
            for q0, q1 in blocks
        ]
        excl = torch.from_numpy(exclude).to(dev) if exclude is not None else None

        def queries(q0: int, q1: int):
            return torch.from_numpy(q[q0:q1]).to(dev)

        if x_dev is not None:
            # Corpus on the device: query blocks outer, nothing crosses the bus twice.
            for (q0, q1), state in zip(blocks, running):
                qt = queries(q0, q1)
                for c0 in range(0, n, cb):
                    self._fold(state, qt @ x_dev[c0 : c0 + cb].T, c0, k, excl[q0:q1] if excl is not None else None)
        else:
            # Streamed: each corpus block crosses once; queries stay if they are small.
            kept = [queries(q0, q1) for q0, q1 in blocks] if q.nbytes <= budget else None
            for c0 in range(0, n, cb):
                c1 = min(n, c0 + cb)
                xc = _tensor(torch, x[c0:c1]).to(dev)
                for j, ((q0, q1), state) in enumerate(zip(blocks, running)):
                    qt = kept[j] if kept is not None else queries(q0, q1)
                    self._fold(state, qt @ xc.T, c0, k, excl[q0:q1] if excl is not None else None)
                del xc
                release_rows(x, c0, c1)
            info["corpus_blocks"] = -(-n // cb)
            info["block_rows"] = cb
        scores = np.full((nq, k), -np.inf, dtype=np.float32)
        indices = np.full((nq, k), -1, dtype=np.int64)
        redo: list[np.ndarray] = []
        for (q0, q1), state in zip(blocks, running):
            width = state.values.shape[1]
            scores[q0:q1, :width] = state.values.cpu().numpy()
            indices[q0:q1, :width] = state.positions.cpu().numpy()
            redo.append(q0 + np.flatnonzero(state.ambiguous.cpu().numpy()))
        indices[scores == -np.inf] = -1
        rows = np.concatenate(redo)
        if rows.size:
            s, i = self._full_rows(q[rows], x, x_dev, k, exclude[rows] if exclude is not None else None, budget)
            scores[rows], indices[rows] = s, i
        return scores, indices

    def _fold(self, state: _Running, s: Any, c0: int, k: int, excl: Any) -> None:
        """Merge the top-k of one (query block, corpus block) score matrix into ``state``.

        Corpus blocks must come in increasing position order for each query block.
        """
        torch = self._torch
        c = s.shape[1]
        if excl is not None:
            hit = torch.nonzero((excl >= c0) & (excl < c0 + c)).flatten()
            s[hit, excl[hit] - c0] = float("-inf")
        kk = min(k + 1, c)
        v, i = torch.topk(s, kk, dim=1)
        i += c0
        v, i = _lexsort(torch, v, i)
        if kk == k + 1 and kk < c:
            state.ambiguous |= (v[:, k - 1] == v[:, k]) & (v[:, k - 1] > float("-inf"))
            v, i = v[:, :k], i[:, :k]
        # Running positions are all below this block's, and both halves are in key
        # order, so a stable sort by score alone keeps the key order.
        v = torch.cat([state.values, v], dim=1)
        i = torch.cat([state.positions, i], dim=1)
        v, perm = torch.sort(v, dim=1, descending=True, stable=True)
        state.values, state.positions = v[:, :k], torch.gather(i, 1, perm)[:, :k]

    def _full_rows(self, q, x, x_dev, k, exclude, budget) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k of a few queries by a stable sort of their whole score rows."""
        torch = self._torch
        dev = self.device
        n = x.shape[0]
        chunk = max(1, budget // (16 * n))  # scores + sorted scores + int64 order
        out_s = np.empty((q.shape[0], k), dtype=np.float32)
        out_i = np.empty((q.shape[0], k), dtype=np.int64)
        for r0 in range(0, q.shape[0], chunk):
            qt = torch.from_numpy(q[r0 : r0 + chunk]).to(dev)
            if x_dev is not None:
                s = qt @ x_dev.T
            else:
                parts = []
                for c0 in range(0, n, 65536):
                    parts.append(qt @ _tensor(torch, x[c0 : c0 + 65536]).to(dev).T)
                    release_rows(x, c0, c0 + 65536)
                s = torch.cat(parts, dim=1)
            if exclude is not None:
                ex = torch.from_numpy(exclude[r0 : r0 + chunk]).to(dev)
                hit = torch.nonzero(ex >= 0).flatten()
                s[hit, ex[hit]] = float("-inf")
            v, order = torch.sort(s, dim=1, descending=True, stable=True)
            kk = min(k, n)
            v_np, i_np = v[:, :kk].cpu().numpy(), order[:, :kk].cpu().numpy()
            out_s[r0 : r0 + chunk] = -np.inf
            out_i[r0 : r0 + chunk] = -1
            out_s[r0 : r0 + chunk, :kk] = v_np
            out_i[r0 : r0 + chunk, :kk] = np.where(v_np == -np.inf, -1, i_np)
        return out_s, out_i

    def _candidates(self, q, x, x_dev, candidates, k, budget) -> tuple[np.ndarray, np.ndarray]:
        """Score each query's candidates on the device (union matmul or gather + bmm);
        select on the host with the shared key order."""
        torch = self._torch
        dev = self.device

        def rows_of(pos: np.ndarray):
            if x_dev is not None and dev.type == "cuda":
                return x_dev[torch.from_numpy(pos).to(dev)]
            return torch.from_numpy(np.take(x, pos, axis=0)).to(dev)

        out = np.full((q.shape[0], k), tk.PAD, dtype=np.uint64)
        for rows, positions, valid in tk.candidate_batches(candidates, q.shape[1], budget):
            qt = torch.from_numpy(q[rows]).to(dev)
            union_wins, union, inverse = tk.use_union_matmul(positions, valid)
            if union_wins:
                local = np.zeros_like(positions)
                local[valid] = inverse
                block = qt @ rows_of(union).T
                s = torch.gather(block, 1, torch.from_numpy(local).to(dev))
            else:
                s = torch.bmm(rows_of(positions), qt[:, :, None])[:, :, 0]
            out[rows] = tk.candidate_topk_keys(s.cpu().numpy(), positions, valid, k)
        return tk.unpack_keys(out)


def _lexsort(torch, v, i):
    """Order (score, position) pairs by score desc, then position asc, per row."""
    i, perm = torch.sort(i, dim=1, stable=True)
    v = torch.gather(v, 1, perm)
    v, perm = torch.sort(v, dim=1, descending=True, stable=True)
    return v, torch.gather(i, 1, perm)
