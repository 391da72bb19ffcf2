"""Cross-device negatives: an all-gather whose backward returns each rank its gradient.

``torch.distributed.all_gather`` cuts the graph, so other devices' embeddings would
be constants and this device would get no gradient through them. The autograd
version in ``torch.distributed.nn`` sums the incoming gradients back to the owner,
which is what contrastive losses over the global batch need.
"""

from __future__ import annotations

from typing import Any

__all__ = ["gather_with_grad", "rank_and_world"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``, ``(0, 1)`` without an initialised process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(tensor: Any) -> Any:
    """Concatenate ``tensor`` from every rank along dim 0, keeping gradients (identity alone)."""
    import torch

    _, world = rank_and_world()
    if world == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)
