"""Triplet loss on cosine distance: ``max(0, d(a, p) - d(a, n) + margin)``.

With several hard negatives per anchor, every (anchor, positive, negative)
triplet counts; without hard negatives the hardest in-batch positive of
another row is used (batch-hard), so the loss works on plain pairs too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["TripletLoss"]


class TripletLoss(nn.Module):
    @classmethod
    def from_config(cls, cfg: Any, *, gather: bool = True) -> "TripletLoss":
        """From a recipe's ``loss`` section (``margin``)."""
        return cls(cfg.margin)

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        a = F.normalize(batch.anchor, dim=-1)
        p = F.normalize(batch.positive, dim=-1)
        d_pos = 1 - (a * p).sum(-1)
        if batch.negatives is not None and batch.negatives.shape[1] > 0:
            n = F.normalize(batch.negatives, dim=-1)
            d_neg = 1 - torch.einsum("bd,bnd->bn", a, n)
        else:
            sims = a @ p.T
            sims = sims.masked_fill(
                torch.eye(len(a), dtype=torch.bool, device=a.device), float("-inf")
            )
            d_neg = (1 - sims.max(dim=1).values)[:, None]
        return F.relu(d_pos[:, None] - d_neg + self.margin).mean()
