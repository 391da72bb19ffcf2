"""Exact search with torch: blocked matmul + ``topk``, meant for CUDA.

Selected by ``auto`` only when faiss is missing and CUDA is available;
``torch:cpu`` runs it on the CPU (tests, benchmarks). ``topk`` does not define
how ties are ordered, so each block fetches k+1, re-sorts by (score desc,
position asc) with stable sorts, and flags queries whose k-th and (k+1)-th
block scores tie; those few are recomputed by a full-row stable sort. On CUDA,
TF32 matmuls are switched off for the call so scores are true float32 products.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.search import topk as tk
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

OPTIONS = ("memory_mb", "query_block")
CUDA_MEMORY_MB = 2048
"""Default score-block budget on CUDA (GPU memory, not host memory)."""


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
        inp = check_inputs(queries, corpus, k, exclude, candidates)
        if inp.n_corpus == 0 or inp.n_queries == 0:
            return empty_result(inp.n_queries, inp.k, self.name, "flat", True)
        with self._torch.inference_mode(), _full_fp32(self._torch, self.device):
            if inp.candidates is not None:
                scores, indices = self._candidates(inp.queries, inp.corpus, inp.candidates, inp.k_work, budget)
            else:
                scores, indices = self._exact(inp.queries, inp.corpus, inp.k_work, inp.exclude, budget, query_block)
        return make_result(scores, indices, inp.k, self.name, "flat", True)

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

    # --- helpers ---

    def _corpus_on_device(self, corpus: np.ndarray):
        """The whole corpus on the device when it fits comfortably, else None (stream it)."""
        torch = self._torch
        if self.device.type != "cuda":
            return torch.from_numpy(corpus)
        free, _total = torch.cuda.mem_get_info(self.device)
        if corpus.nbytes <= free // 2:
            return torch.from_numpy(corpus).to(self.device)
        return None

    def _exact(
        self,
        q: np.ndarray,
        x: np.ndarray,
        k: int,
        exclude: np.ndarray | None,
        budget: int,
        query_block: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        dev = self.device
        nq, n = q.shape[0], x.shape[0]
        qb = max(1, min(nq, query_block))
        cb = max(1, min(n, budget // (4 * qb)))
        x_dev = self._corpus_on_device(x)
        neg_inf = torch.tensor(float("-inf"), device=dev)
        scores = np.empty((nq, k), dtype=np.float32)
        indices = np.empty((nq, k), dtype=np.int64)
        redo: list[np.ndarray] = []
        for q0 in range(0, nq, qb):
            qt = torch.from_numpy(q[q0 : q0 + qb]).to(dev)
            b = qt.shape[0]
            run_v = torch.full((b, 0), float("-inf"), device=dev)
            run_i = torch.full((b, 0), -1, dtype=torch.int64, device=dev)
            ambiguous = torch.zeros(b, dtype=torch.bool, device=dev)
            excl = None
            if exclude is not None:
                excl = torch.from_numpy(exclude[q0 : q0 + b]).to(dev)
            for c0 in range(0, n, cb):
                c = min(cb, n - c0)
                xc = x_dev[c0 : c0 + c] if x_dev is not None else torch.from_numpy(x[c0 : c0 + c]).to(dev)
                s = qt @ xc.T
                if excl is not None:
                    hit = torch.nonzero((excl >= c0) & (excl < c0 + c)).flatten()
                    s[hit, excl[hit] - c0] = neg_inf
                kk = min(k + 1, c)
                v, i = torch.topk(s, kk, dim=1)
                i += c0
                v, i = _lexsort(torch, v, i)
                if kk == k + 1 and kk < c:
                    ambiguous |= (v[:, k - 1] == v[:, k]) & (v[:, k - 1] > float("-inf"))
                    v, i = v[:, :k], i[:, :k]
                # Running positions are all below this block's, and both halves are
                # in key order, so a stable sort by score alone keeps the key order.
                v = torch.cat([run_v, v], dim=1)
                i = torch.cat([run_i, i], dim=1)
                v, perm = torch.sort(v, dim=1, descending=True, stable=True)
                run_v, run_i = v[:, :k], torch.gather(i, 1, perm)[:, :k]
            v_np, i_np = run_v.cpu().numpy(), run_i.cpu().numpy()
            width = v_np.shape[1]
            scores[q0 : q0 + b, :width] = v_np
            indices[q0 : q0 + b, :width] = i_np
            scores[q0 : q0 + b, width:] = -np.inf
            indices[q0 : q0 + b, width:] = -1
            redo.append(q0 + np.flatnonzero(ambiguous.cpu().numpy()))
        bad = scores == -np.inf
        indices[bad] = -1
        rows = np.concatenate(redo)
        if rows.size:
            s, i = self._full_rows(q[rows], x, x_dev, k, exclude[rows] if exclude is not None else None, budget)
            scores[rows], indices[rows] = s, i
        return scores, indices

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
                s = torch.cat(
                    [qt @ torch.from_numpy(x[c0 : c0 + 65536]).to(dev).T for c0 in range(0, n, 65536)],
                    dim=1,
                )
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

    def _candidates(self, q, x, candidates, k, budget) -> tuple[np.ndarray, np.ndarray]:
        """Score each query's candidates on the device (union matmul or gather + bmm);
        select on the host with the shared key order."""
        torch = self._torch
        dev = self.device
        x_dev = self._corpus_on_device(x)

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
