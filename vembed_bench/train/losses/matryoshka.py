"""Matryoshka wrapper: the same loss on the leading d dimensions, for each d, weighted.

Training every prefix makes truncated embeddings usable (Kusupati et al., 2022).
The full dimension is always included so the wrapper never trains less than
the wrapped loss does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["MatryoshkaLoss"]


class MatryoshkaLoss(nn.Module):
    def __init__(
        self, loss: nn.Module, dims: Sequence[int], weights: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.loss = loss
        self.dims = [int(d) for d in dims]
        self.weights = [float(w) for w in weights] if weights else [1.0] * len(self.dims)

    def forward(self, batch: EmbeddingBatch) -> torch.Tensor:
        full = batch.dim
        total = self.loss(batch)  # the full dimension, weight 1
        for dim, weight in zip(self.dims, self.weights):
            if dim > full:
                raise ValueError(f"Matryoshka dim {dim} exceeds the embedding size {full}")
            if dim < full:
                total = total + weight * self.loss(batch.truncate(dim))
        return total
