"""Losses, one per module, all ``loss(batch: EmbeddingBatch) -> scalar``; :func:`build_loss` picks one.

Each loss is an entry of :data:`LOSSES` (registered lazily, so naming a loss
imports no torch) whose class builds itself from a recipe's ``loss`` section
with ``from_config(cfg, *, gather)``. The recipe schema accepts exactly the
registered names.
"""

from __future__ import annotations

from typing import Any

from vembed_bench.registry import Registry
from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["LOSSES", "EmbeddingBatch", "build_loss"]

LOSSES: Registry[Any] = Registry("loss")
"""``loss.name`` -> a loss class with ``from_config(cfg, *, gather)``."""
_LOSS = "vembed_bench.train.losses"
LOSSES.lazy("infonce", f"{_LOSS}.infonce:InfoNCELoss")
LOSSES.lazy("supcon", f"{_LOSS}.supcon:SupConLoss")
LOSSES.lazy("triplet", f"{_LOSS}.triplet:TripletLoss")
LOSSES.lazy("cosent", f"{_LOSS}.cosent:CoSENTLoss")
LOSSES.lazy("distill", f"{_LOSS}.distill:DistillLoss")


def build_loss(cfg: Any, *, gather: bool = True) -> Any:
    """The loss module for a recipe's ``loss`` section (with Matryoshka / spread-out wrappers)."""
    loss = LOSSES.get(cfg.name).from_config(cfg, gather=gather)
    if cfg.matryoshka_dims:
        from vembed_bench.train.losses.matryoshka import MatryoshkaLoss

        loss = MatryoshkaLoss(loss, cfg.matryoshka_dims, cfg.matryoshka_weights or None)
    if cfg.spread_out_weight > 0:
        from vembed_bench.train.losses.spread_out import SpreadOutRegularizer, WithRegularizer

        loss = WithRegularizer(loss, SpreadOutRegularizer(), cfg.spread_out_weight)
    return loss
