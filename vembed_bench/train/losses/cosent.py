"""CoSENT (Su, 2022): rank pairs by cosine so that higher gold scores get higher similarity.

``log(1 + sum over (i, j) with s_i > s_j of exp((cos_j - cos_i) * scale))``, the
pairwise ranking form that trains on graded similarity (STS-style) data.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["CoSENTLoss"]


class CoSENTLoss(nn.Module):
    @classmethod
    def from_config(cls, cfg: Any, *, gather: bool = True) -> "CoSENTLoss":
        """From a recipe's ``loss`` section: the scale is ``1 / temperature``."""
        return cls(1.0 / cfg.temperature)

    def __init__(self, scale: float = 20.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        if batch.scores is None:
            raise ValueError("CoSENT needs gold scores per pair")
        cos = (F.normalize(batch.anchor, dim=-1) * F.normalize(batch.positive, dim=-1)).sum(
            -1
        ) * self.scale
        diff = cos[None, :] - cos[:, None]  # diff[i, j] = cos_j - cos_i
        valid = batch.scores[:, None] > batch.scores[None, :]
        diff = diff.masked_fill(~valid, float("-inf"))
        zero = diff.new_zeros(1)
        return torch.logsumexp(torch.cat([zero, diff.flatten()]), dim=0)
