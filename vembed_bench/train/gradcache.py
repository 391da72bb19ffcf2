"""GradCache (Gao et al., 2021): a large contrastive batch at the memory cost of one chunk.

Contrastive losses need every embedding of the batch at once, but the encoder's
activations only need to exist for one chunk at a time:

1. forward all chunks **without** gradients and keep only the embeddings;
2. compute the loss on those cached embeddings (made leaf tensors) and
   backpropagate it to them, giving d(loss)/d(embedding) for every row;
3. forward each chunk again **with** gradients and backpropagate the cached
   embedding gradients through it (``emb.backward(grad)``), accumulating the
   parameter gradients.

The result equals one full-batch step. Dropout would differ between the two
forwards, so the RNG state (CPU and CUDA) is recorded before each chunk's first
forward and restored before its re-forward: the masks match exactly. LoRA only
changes which parameters receive gradients, Matryoshka is part of the loss on
cached embeddings, and cross-device gathering happens inside the loss, so all
three compose with this unchanged. Under DDP, gradient sync is skipped for all
but the last re-forward (``no_sync``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["RandContext", "gradcache_step", "plain_step"]

EmbedFn = Callable[[Sequence[Any]], torch.Tensor]
"""Embeds a list of inputs (texts, images) with gradients."""
LossFn = Callable[[torch.Tensor], torch.Tensor]


class RandContext:
    """Snapshot of the CPU (and CUDA) RNG; ``with ctx:`` replays it, restoring the outer state after."""

    def __init__(self, device: torch.device | None = None) -> None:
        self.cpu_state = torch.get_rng_state()
        self.cuda = device is not None and device.type == "cuda" and torch.cuda.is_available()
        self.cuda_state = torch.cuda.get_rng_state(device) if self.cuda else None
        self.device = device
        self._fork: Any = None

    def __enter__(self) -> None:
        devices = [self.device] if self.cuda else []
        self._fork = torch.random.fork_rng(devices=devices, enabled=True)
        self._fork.__enter__()
        torch.set_rng_state(self.cpu_state)
        if self.cuda:
            torch.cuda.set_rng_state(self.cuda_state, self.device)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)
        self._fork = None


def plain_step(
    embed: EmbedFn, inputs: Sequence[Any], loss_fn: LossFn, backward: Callable[[Any], None]
) -> float:
    """One ordinary step: embed everything with gradients, loss, backward."""
    loss = loss_fn(embed(inputs))
    backward(loss)
    return float(loss.detach())


def gradcache_step(
    embed: EmbedFn,
    inputs: Sequence[Any],
    loss_fn: LossFn,
    chunk_size: int,
    *,
    backward: Callable[..., None] | None = None,
    no_sync: Callable[[], Any] | None = None,
    device: torch.device | None = None,
) -> float:
    """One GradCache step over ``inputs``; parameter gradients accumulate as in a full-batch step.

    ``embed`` maps a list of inputs to ``(n, dim)`` embeddings; ``loss_fn`` maps the
    concatenated ``(len(inputs), dim)`` embeddings to a scalar. ``backward(tensor,
    gradient=...)`` defaults to ``tensor.backward`` (pass the accelerator's for
    mixed precision); ``no_sync()`` is a context that pauses DDP gradient sync.
    """
    backward = backward or (lambda tensor, gradient=None: tensor.backward(gradient))
    chunks = [list(inputs[i : i + chunk_size]) for i in range(0, len(inputs), chunk_size)]
    states, cached = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(RandContext(device))
            cached.append(embed(chunk))
    reps = torch.cat(cached, dim=0).detach().requires_grad_(True)
    loss = loss_fn(reps)
    loss.backward()  # d(loss)/d(reps) only: reps are leaves cut from the encoder
    grads = reps.grad.split([len(c) for c in chunks])
    for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads)):
        last = i == len(chunks) - 1
        sync = contextlib.nullcontext() if (last or no_sync is None) else no_sync()
        with sync, state:
            emb = embed(chunk)
            backward(emb, gradient=grad)
    return float(loss.detach())
