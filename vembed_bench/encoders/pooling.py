"""Pooling: turn per-token hidden states into one vector per sequence.

All functions take ``hidden`` of shape ``(batch, seq, dim)`` and an
``attention_mask`` of shape ``(batch, seq)`` (1 = real token, 0 = padding) and
are mask-aware, so they give the same answer whether the tokenizer pads on the
right (BERT-style encoders) or on the left (decoder LLMs). They return float32
because pooled vectors are compared across batches and a bf16 sum over many
tokens loses precision.

torch is imported lazily by the callers; these functions only use tensor
methods, so importing this module is free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from vembed_bench.errors import VembedError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

POOLING_MODES: tuple[str, ...] = ("cls", "mean", "last")


def cls_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """The first *real* token of each row (position 0 with right padding).

    With left padding the first real token is after the pads, so the index is
    the first position whose mask is 1, not a hard-coded 0.
    """
    first = attention_mask.int().argmax(dim=1)  # argmax returns the first maximum
    return _gather_rows(hidden, first)


def mean_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Average of the real tokens (pads excluded), as sentence-transformers does.

    Done as one batched matmul ``mask @ hidden`` in float32, which avoids
    materialising a ``(batch, seq, dim)`` masked copy of the hidden states.
    """
    import torch

    mask = attention_mask.to(dtype=torch.float32).unsqueeze(1)  # (batch, 1, seq)
    summed = mask.bmm(hidden.float()).squeeze(1)  # (batch, dim)
    counts = mask.sum(dim=2).clamp_min(1.0)  # (batch, 1)
    return summed / counts


def last_token_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """The last *real* token of each row, for decoder models (E5-Mistral, Qwen embeddings).

    Position ``-1`` is only right for left padding; with right padding it is a
    pad. The index of the last 1 in the mask is right for both.
    """
    seq = attention_mask.shape[1]
    last = (seq - 1) - attention_mask.int().flip(dims=[1]).argmax(dim=1)
    return _gather_rows(hidden, last)


_POOLERS: dict[str, Callable[..., "torch.Tensor"]] = {
    "cls": cls_pool,
    "mean": mean_pool,
    "last": last_token_pool,
}


def pool(mode: str, hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Dispatch on a pooling name from :data:`POOLING_MODES`."""
    try:
        fn = _POOLERS[mode]
    except KeyError:
        raise VembedError(
            f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}"
        ) from None
    return fn(hidden, attention_mask)


def _gather_rows(hidden: "torch.Tensor", positions: "torch.Tensor") -> "torch.Tensor":
    """``hidden[b, positions[b]]`` for every row ``b``, as float32."""
    import torch

    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, positions.to(hidden.device)].float()
