"""Cross-device negatives: two gloo processes on CPU vs one process holding the whole batch."""

from __future__ import annotations

import os
import traceback

import pytest

WORLD, PER_RANK, DIM = 2, 4, 6


def _data():
    import torch

    generator = torch.Generator().manual_seed(0)
    return (
        torch.randn(WORLD * PER_RANK, DIM, generator=generator, dtype=torch.float64),
        torch.randn(WORLD * PER_RANK, DIM, generator=generator, dtype=torch.float64),
    )


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch
    import torch.distributed as dist

    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        anchors, positives = _data()
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for symmetric in (False, True):
            a = anchors[part].clone().requires_grad_(True)
            p = positives[part].clone().requires_grad_(True)
            loss = InfoNCELoss(0.1, symmetric=symmetric, gather=True)(EmbeddingBatch(a, p))
            loss.backward()
            torch.save(
                {"loss": loss.detach(), "a": a.grad, "p": p.grad},
                f"{out_dir}/rank{rank}-{symmetric}.pt",
            )
        dist.barrier()
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    # Leave without the interpreter's teardown: gloo's background threads sometimes abort
    # it ("terminate called without an active exception") after all the work is saved.
    os._exit(0)


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return out


@pytest.mark.parametrize("symmetric", [False, True])
def test_all_gather_keeps_gradients(gathered, symmetric):
    import torch

    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss

    anchors, positives = _data()
    a = anchors.clone().requires_grad_(True)
    p = positives.clone().requires_grad_(True)
    reference = InfoNCELoss(0.1, symmetric=symmetric, gather=False)(EmbeddingBatch(a, p))
    reference.backward()
    ranks = [
        torch.load(gathered / f"rank{r}-{symmetric}.pt", weights_only=True) for r in range(WORLD)
    ]
    # The global loss is the mean of the per-rank losses; every rank's backward reaches every
    # rank's embeddings through the gather, so each rank holds WORLD x d(global loss)/d(own rows).
    assert float(sum(r["loss"] for r in ranks) / WORLD) == pytest.approx(
        float(reference.detach()), rel=1e-12
    )
    for rank, got in enumerate(ranks):
        part = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        torch.testing.assert_close(got["a"] / WORLD, a.grad[part], atol=1e-12, rtol=1e-9)
        torch.testing.assert_close(got["p"] / WORLD, p.grad[part], atol=1e-12, rtol=1e-9)
