"""What every loss receives: the embeddings of one batch, plus optional labels and scores.

All losses share one signature, ``loss(batch: EmbeddingBatch) -> scalar tensor``,
so wrappers (Matryoshka), regularisers (spread-out) and GradCache treat them
alike: GradCache computes a loss on cached embeddings without knowing which.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["EmbeddingBatch"]


@dataclass
class EmbeddingBatch:
    """Embeddings of one batch; ``negatives`` is ``(B, N, D)`` (N hard negatives per row)."""

    anchor: Any
    positive: Any = None
    negatives: Any = None
    labels: Any = None
    """``(B,)`` integer class ids (supervised contrastive)."""
    scores: Any = None
    """``(B,)`` gold similarity of anchor and positive (CoSENT)."""
    teacher_scores: Any = None
    """``(B, 1 + N)`` teacher scores of (positive, negatives) per anchor (distillation)."""

    def truncate(self, dim: int) -> EmbeddingBatch:
        """The batch with only the leading ``dim`` dimensions (Matryoshka), re-normalised."""
        import torch.nn.functional as F

        def cut(t: Any) -> Any:
            return None if t is None else F.normalize(t[..., :dim], dim=-1)

        return replace(
            self,
            anchor=cut(self.anchor),
            positive=cut(self.positive),
            negatives=cut(self.negatives),
        )

    @property
    def dim(self) -> int:
        return int(self.anchor.shape[-1])
