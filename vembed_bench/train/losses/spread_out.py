"""Spread-out regulariser (global orthogonal regularisation, Zhang et al., 2017).

For non-matching pairs (anchor i, positive j != i), unit vectors spread
uniformly on the sphere have similarity mean 0 and second moment 1/d. The
penalty ``M1^2 + max(0, M2 - 1/d)`` pushes towards that, which counters the
collapse of embeddings into a narrow cone (common when turning an LLM into an
embedder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["SpreadOutRegularizer", "WithRegularizer"]


class SpreadOutRegularizer(nn.Module):
    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        anchor = F.normalize(batch.anchor, dim=-1)
        other = F.normalize(batch.positive if batch.positive is not None else batch.anchor, dim=-1)
        sims = anchor @ other.T
        n = sims.shape[0]
        if n < 2:
            return sims.new_zeros(())
        off = sims[~torch.eye(n, dtype=torch.bool, device=sims.device)]
        m1 = off.mean()
        m2 = (off**2).mean()
        return m1**2 + torch.clamp(m2 - 1.0 / anchor.shape[-1], min=0.0)


class WithRegularizer(nn.Module):
    """``loss(batch) + weight * regularizer(batch)``."""

    def __init__(self, loss: nn.Module, regularizer: nn.Module, weight: float) -> None:
        super().__init__()
        self.loss = loss
        self.regularizer = regularizer
        self.weight = float(weight)

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        return self.loss(batch) + self.weight * self.regularizer(batch)
