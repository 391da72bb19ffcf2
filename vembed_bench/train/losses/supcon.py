"""Supervised contrastive loss (Khosla et al., 2020): same-label items are positives.

Views are the anchors plus, when given, the positives (a second view of each
row, same label). For each view, the loss averages ``-log softmax`` over all
other views that share its label; views without a same-label partner are skipped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["SupConLoss"]


class SupConLoss(nn.Module):
    @classmethod
    def from_config(cls, cfg: Any, *, gather: bool = True) -> "SupConLoss":
        """From a recipe's ``loss`` section (``temperature``)."""
        return cls(cfg.temperature)

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        if batch.labels is None:
            raise ValueError("supervised contrastive loss needs labels")
        views = [batch.anchor] + ([batch.positive] if batch.positive is not None else [])
        z = F.normalize(torch.cat(views, dim=0), dim=-1)
        labels = batch.labels.repeat(len(views))
        n = z.shape[0]
        self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
        logits = (z @ z.T / self.temperature).masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        counts = positives.sum(1)
        keep = counts > 0
        if not keep.any():
            return z.sum() * 0.0
        pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1)
        return -(pos_log_prob[keep] / counts[keep]).mean()
