"""Poolings for decoder-LLM embedders, on top of :mod:`vembed_bench.encoders.pooling`.

* ``eos``: an EOS token is appended to every input and its hidden state is the
  embedding (E5-Mistral, Qwen3-Embedding, GTE-Qwen). Pooled like ``last``.
* ``last``: the last real token, whatever it is.
* ``mean``: the average over real tokens.
* ``weighted_mean``: position-weighted mean (SGPT): the i-th real token
  (1-based) gets weight ``i / sum(1..n)``, because in a causal model later
  tokens have seen more of the input.
* ``skip_instruction``: the mean over the tokens *after* the instruction
  separator only (LLM2Vec / NV-Embed style), so the instruction steers the
  hidden states without being averaged into the embedding.

Every function takes a ``(batch, seq)`` 0/1 mask; with left or right padding
the answer is the same because positions are counted over real tokens only.
``skip_instruction`` takes the *embed mask* (1 on the tokens to pool), which
the encoder builds from character offsets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vembed_bench.encoders.pooling import last_token_pool, mean_pool
from vembed_bench.errors import VembedError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

LLM_POOLING_MODES: tuple[str, ...] = ("eos", "last", "mean", "weighted_mean", "skip_instruction")


def position_weights(attention_mask: "torch.Tensor") -> "torch.Tensor":
    """``(batch, seq)`` float32 weights: the i-th real token gets ``i``, normalised to sum 1."""
    import torch

    mask = attention_mask.to(torch.float32)
    ranks = mask.cumsum(dim=1) * mask  # 1..n over real tokens, 0 on pads (either side)
    return ranks / ranks.sum(dim=1, keepdim=True).clamp_min(1.0)


def weighted_mean_pool(hidden: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """Position-weighted mean (SGPT), as one batched matmul in float32."""
    weights = position_weights(attention_mask).unsqueeze(1)  # (batch, 1, seq)
    return weights.bmm(hidden.float()).squeeze(1)


def llm_pool(
    mode: str,
    hidden: "torch.Tensor",
    attention_mask: "torch.Tensor",
    embed_mask: "torch.Tensor | None" = None,
) -> "torch.Tensor":
    """Dispatch on a name from :data:`LLM_POOLING_MODES`.

    ``embed_mask`` is required for ``skip_instruction``; a row whose embed mask
    is empty (no text after the separator) falls back to all its real tokens.
    """
    if mode in ("eos", "last"):
        return last_token_pool(hidden, attention_mask)
    if mode == "mean":
        return mean_pool(hidden, attention_mask)
    if mode == "weighted_mean":
        return weighted_mean_pool(hidden, attention_mask)
    if mode == "skip_instruction":
        if embed_mask is None:
            raise VembedError("skip_instruction pooling needs the embed mask of the text tokens")
        mask = embed_mask * attention_mask
        empty = mask.sum(dim=1) == 0
        if bool(empty.any()):
            mask = mask.clone()
            mask[empty] = attention_mask[empty]
        return mean_pool(hidden, mask)
    raise VembedError(f"unknown pooling {mode!r}; choose one of {', '.join(LLM_POOLING_MODES)}")
