"""Distillation from teacher scores: KL(teacher || student) over each anchor's candidates.

Candidates are the row's positive then its hard negatives; the teacher's scores
(e.g. a cross-encoder's) are turned into a distribution with its own
temperature, and the student's cosine similarities with the loss temperature.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["DistillLoss"]


class DistillLoss(nn.Module):
    @classmethod
    def from_config(cls, cfg: Any, *, gather: bool = True) -> "DistillLoss":
        """From a recipe's ``loss`` section (``temperature``)."""
        return cls(cfg.temperature)

    def __init__(self, temperature: float = 0.05, teacher_temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.teacher_temperature = teacher_temperature

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        if batch.teacher_scores is None:
            raise ValueError("distillation needs teacher scores")
        a = F.normalize(batch.anchor, dim=-1)
        cands = [F.normalize(batch.positive, dim=-1)[:, None, :]]
        if batch.negatives is not None and batch.negatives.shape[1] > 0:
            cands.append(F.normalize(batch.negatives, dim=-1))
        cands = torch.cat(cands, dim=1)
        student = torch.einsum("bd,bnd->bn", a, cands) / self.temperature
        teacher = F.log_softmax(
            batch.teacher_scores[:, : cands.shape[1]] / self.teacher_temperature, dim=-1
        )
        return F.kl_div(
            F.log_softmax(student, dim=-1), teacher, log_target=True, reduction="batchmean"
        )
