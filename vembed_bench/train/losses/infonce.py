"""InfoNCE (MultipleNegativesRanking): in-batch plus hard negatives, cosine / temperature.

Each anchor must pick its own positive among every positive and hard negative
of the (global) batch. ``symmetric`` adds the reverse direction (positive ->
anchors), as in CLIP. The temperature is fixed or learnable (stored as a log,
clamped to [1e-3, 1] so it cannot collapse).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.distributed import gather_with_grad, rank_and_world
from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["InfoNCELoss"]


class InfoNCELoss(nn.Module):
    @classmethod
    def from_config(cls, cfg: Any, *, gather: bool = True) -> "InfoNCELoss":
        """From a recipe's ``loss`` section (``temperature``, ``learnable_temperature``, ``symmetric``)."""
        return cls(cfg.temperature, learnable_temperature=cfg.learnable_temperature,
                   symmetric=cfg.symmetric, gather=gather)

    def __init__(
        self,
        temperature: float = 0.05,
        *,
        learnable_temperature: bool = False,
        symmetric: bool = False,
        gather: bool = True,
    ) -> None:
        super().__init__()
        self.fixed_temperature = float(temperature)
        self.log_temperature = (
            nn.Parameter(torch.tensor(math.log(temperature))) if learnable_temperature else None
        )
        self.symmetric = symmetric
        self.gather = gather

    @property
    def temperature(self) -> torch.Tensor | float:
        if self.log_temperature is None:
            return self.fixed_temperature
        return self.log_temperature.clamp(math.log(1e-3), 0.0).exp()

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        anchor = F.normalize(batch.anchor, dim=-1)
        positive = F.normalize(batch.positive, dim=-1)
        candidates = [positive]
        if batch.negatives is not None and batch.negatives.shape[1] > 0:
            candidates.append(F.normalize(batch.negatives, dim=-1).reshape(-1, anchor.shape[-1]))
        candidates = torch.cat(candidates, dim=0)
        rank, offset = 0, 0
        if self.gather:
            rank, _ = rank_and_world()
            offset = rank * positive.shape[0]  # equal per-rank batches: positives lead each shard
            all_pos = gather_with_grad(positive)
            rest = candidates[positive.shape[0] :]
            candidates = (
                torch.cat([all_pos, gather_with_grad(rest)], dim=0) if rest.numel() else all_pos
            )
            all_anchor = gather_with_grad(anchor) if self.symmetric else None
        scale = 1.0 / self.temperature
        targets = torch.arange(anchor.shape[0], device=anchor.device) + offset
        loss = F.cross_entropy(anchor @ candidates.T * scale, targets)
        if self.symmetric:
            anchors = all_anchor if self.gather else anchor
            loss = (loss + F.cross_entropy(positive @ anchors.T * scale, targets)) / 2
        return loss
