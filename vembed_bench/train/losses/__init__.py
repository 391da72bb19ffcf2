"""Losses, one per module, all ``loss(batch: EmbeddingBatch) -> scalar``; :func:`build_loss` picks one."""

from __future__ import annotations

from typing import Any

from vembed_bench.train.losses.base import EmbeddingBatch

__all__ = ["EmbeddingBatch", "build_loss"]


def build_loss(cfg: Any, *, gather: bool = True) -> Any:
    """The loss module for a recipe's ``loss`` section (with Matryoshka / spread-out wrappers)."""
    if cfg.name == "infonce":
        from vembed_bench.train.losses.infonce import InfoNCELoss

        loss = InfoNCELoss(
            cfg.temperature,
            learnable_temperature=cfg.learnable_temperature,
            symmetric=cfg.symmetric,
            gather=gather,
        )
    elif cfg.name == "supcon":
        from vembed_bench.train.losses.supcon import SupConLoss

        loss = SupConLoss(cfg.temperature)
    elif cfg.name == "triplet":
        from vembed_bench.train.losses.triplet import TripletLoss

        loss = TripletLoss(cfg.margin)
    elif cfg.name == "cosent":
        from vembed_bench.train.losses.cosent import CoSENTLoss

        loss = CoSENTLoss(1.0 / cfg.temperature)
    elif cfg.name == "distill":
        from vembed_bench.train.losses.distill import DistillLoss

        loss = DistillLoss(cfg.temperature)
    else:  # pragma: no cover - the recipe schema restricts names
        raise ValueError(f"unknown loss {cfg.name!r}")
    if cfg.matryoshka_dims:
        from vembed_bench.train.losses.matryoshka import MatryoshkaLoss

        loss = MatryoshkaLoss(loss, cfg.matryoshka_dims, cfg.matryoshka_weights or None)
    if cfg.spread_out_weight > 0:
        from vembed_bench.train.losses.spread_out import SpreadOutRegularizer, WithRegularizer

        loss = WithRegularizer(loss, SpreadOutRegularizer(), cfg.spread_out_weight)
    return loss
