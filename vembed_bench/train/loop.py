"""The training loop: accelerate, schedules, clipping, logging, checkpoints and exact resume.

The data order of epoch ``e`` is a permutation drawn from ``seed + e``, so the
position in the data is just the global step: resuming restores the weights,
optimizer, scheduler and RNG states of the last checkpoint and continues at its
step, giving the same weights as an uninterrupted run. Each process takes its
contiguous share of every global batch (DDP); contrastive losses gather the
other shares as negatives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError
from vembed_bench.train.data import TrainExample

log = logging.getLogger(__name__)

__all__ = ["FitSummary", "fit", "latest_checkpoint"]

CHECKPOINTS = "checkpoints"
TRAIN_LOG = "train_log.jsonl"


@dataclass
class FitSummary:
    steps: int
    resumed_from: int | None
    final_loss: float | None
    seconds: float
    samples_per_second: float
    log_rows: list[dict[str, Any]] = field(default_factory=list)


def fit(
    recipe: Any,
    model: Any,
    examples: Sequence[TrainExample],
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = True,
    accelerator: Any = None,
) -> FitSummary:
    """Train ``model`` in place on ``examples``; logs, TensorBoard and checkpoints go to ``run_dir``."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cfg = recipe.training
    use_cuda = torch.cuda.is_available()
    if accelerator is None:
        from accelerate.utils import DistributedDataParallelKwargs

        ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
        accelerator = Accelerator(
            cpu=not use_cuda,
            mixed_precision="bf16" if (cfg.bf16 and use_cuda) else "no",
            kwargs_handlers=[ddp],
        )
    world, rank = accelerator.num_processes, accelerator.process_index
    if cfg.batch_size % world:
        raise VembedError(
            f"training.batch_size {cfg.batch_size} must divide by the {world} processes"
        )
    set_seed(cfg.seed)

    from vembed_bench.train.losses import build_loss

    loss_module = build_loss(recipe.loss, gather=cfg.gather_across_devices).to(accelerator.device)
    labels = _label_ids(examples) if recipe.loss.name == "supcon" else {}
    params = [p for p in model.parameters() if p.requires_grad] + list(loss_module.parameters())
    if not params:
        raise VembedError(
            "nothing to train: every parameter is frozen (check model.freeze and lora)"
        )
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = _steps_per_epoch(len(examples), cfg.batch_size, world)
    total = cfg.max_steps or cfg.epochs * per_epoch
    scheduler = _scheduler(optimizer, cfg, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()

    run_dir = Path(run_dir)
    start, resumed = 0, None
    if resume:
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise VembedError(f"--resume: no checkpoint in {run_dir / CHECKPOINTS}")
        start = _load_checkpoint(
            checkpoint, accelerator.unwrap_model(model), loss_module, optimizer, scheduler
        )
        resumed = start
    log_rows = _restore_log(run_dir / TRAIN_LOG, start) if accelerator.is_main_process else []
    writer = _writer(cfg, run_dir, recipe) if accelerator.is_main_process else None

    from vembed_bench.train.model import embed_inputs

    def embed(inputs: Sequence[Any]) -> Any:
        with accelerator.autocast():
            return embed_inputs(model, inputs, accelerator.device).float()

    chunks = _chunk_tuner(recipe, accelerator.device, world)

    def reset() -> None:  # a step that ran out of memory may have left part of its gradients
        optimizer.zero_grad(set_to_none=True)

    bar = _progress(total, start, progress and accelerator.is_main_process)
    began = time.perf_counter()
    samples = 0
    final_loss = None
    for step in range(start, total):
        epoch, position = divmod(step, per_epoch)
        indices = _batch_indices(len(examples), cfg.batch_size, world, cfg.seed, epoch, position)
        local = [examples[i] for i in _shard(indices, rank, world)]
        tick = time.perf_counter()
        loss_value = _train_step(
            local, embed, loss_module, labels, recipe, accelerator, model, accelerator.device,
            chunks=chunks, reset=reset,
        )
        if world > 1:  # log the whole batch's loss, not the main process's share
            share = torch.tensor(loss_value, device=accelerator.device)
            loss_value = float(accelerator.reduce(share, reduction="mean"))
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        lr = scheduler.get_last_lr()[0]  # the rate this step used
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - tick
        samples += len(indices)
        final_loss = loss_value
        done = step + 1
        row = {
            "step": done,
            "epoch": round(done / per_epoch, 4),
            "loss": round(loss_value, 6),
            "lr": lr,
            "samples_per_s": round(len(indices) / elapsed, 2),
            "processes": world,
        }
        if chunks is not None:
            row["gradcache_chunk"] = chunks.size
        if accelerator.is_main_process:
            if done % cfg.log_every == 0 or done == total:
                log_rows.append(row)
                _append_log(run_dir / TRAIN_LOG, row)
                if writer is not None:
                    writer.log(row)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{row['lr']:.2e}")
        at_epoch_end = done % per_epoch == 0
        if (
            done == total
            or (cfg.save_every and done % cfg.save_every == 0)
            or (not cfg.save_every and at_epoch_end)
        ):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                _save_checkpoint(
                    run_dir,
                    done,
                    accelerator.unwrap_model(model),
                    loss_module,
                    optimizer,
                    scheduler,
                    cfg.keep_checkpoints,
                )
    bar.close()
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - began
    return FitSummary(
        steps=total,
        resumed_from=resumed,
        final_loss=final_loss,
        seconds=round(seconds, 3),
        samples_per_second=round(samples / seconds, 2) if seconds > 0 else 0.0,
        log_rows=log_rows,
    )


# -- one step ------------------------------------------------------------------------------


def _train_step(
    batch: Sequence[TrainExample],
    embed: Any,
    loss_module: Any,
    labels: dict[str, int],
    recipe: Any,
    accelerator: Any,
    model: Any,
    device: Any,
    *,
    chunks: Any = None,
    reset: Any = None,
) -> float:
    """One optimisation step's forward and backward (no optimizer step); ``chunks``: the
    :class:`~vembed_bench.encoders.batching.BatchTuner` of ``gradcache_chunk: auto``, which
    reruns the step at half the chunk after an out-of-memory error (``reset`` first)."""
    import torch

    from vembed_bench.train.gradcache import gradcache_step, plain_step
    from vembed_bench.train.losses import EmbeddingBatch

    n_neg = min([len(ex.negatives) for ex in batch] + [recipe.data.negatives_per_query])
    has_positive = all(ex.positive for ex in batch)
    inputs = [ex.query for ex in batch]
    if has_positive:
        inputs += [ex.positive for ex in batch]
    inputs += [neg for ex in batch for neg in ex.negatives[:n_neg]]
    size = len(batch)
    extras: dict[str, Any] = {}
    if recipe.loss.name == "supcon":
        extras["labels"] = torch.tensor([labels[ex.label] for ex in batch], device=device)
    if recipe.loss.name == "cosent":
        extras["scores"] = torch.tensor([float(ex.score) for ex in batch], device=device)
    if recipe.loss.name == "distill":
        extras["teacher_scores"] = torch.tensor(
            [ex.teacher_scores[: 1 + n_neg] for ex in batch], device=device, dtype=torch.float32
        )

    def loss_fn(reps: Any) -> Any:
        anchor = reps[:size]
        positive = reps[size : 2 * size] if has_positive else None
        rest = reps[2 * size :] if has_positive else reps[size:]
        negatives = rest.reshape(size, n_neg, -1) if n_neg else None
        return loss_module(EmbeddingBatch(anchor, positive, negatives, **extras))

    def chunked(chunk: int) -> float:
        return gradcache_step(
            embed,
            inputs,
            loss_fn,
            chunk,
            backward=accelerator.backward,
            no_sync=(lambda: accelerator.no_sync(model)),
            device=device,
        )

    if chunks is not None:
        return chunks.run(chunked, reset=reset)
    if recipe.training.gradcache_chunk:
        return chunked(recipe.training.gradcache_chunk)
    if accelerator.num_processes == 1:  # DDP allows one forward per backward
        roles = [size] * (2 if has_positive else 1) + ([size * n_neg] if n_neg else [])
        return plain_step(_by_role(embed, roles), inputs, loss_fn, accelerator.backward)
    return plain_step(embed, inputs, loss_fn, accelerator.backward)


def _chunk_tuner(recipe: Any, device: Any, world: int) -> Any:
    """The tuner of ``training.gradcache_chunk: auto`` (None otherwise): on CPU from the RAM and the
    model's shape, on a GPU from the memo (keyed by the model path, dtype, max length and device) or
    else from the inputs of one step (no chunking), halved on out-of-memory."""
    if recipe.training.gradcache_chunk != "auto":
        return None
    from vembed_bench.encoders.batching import device_label, memo_key, model_shape, new_tuner
    from vembed_bench.train.model import resolve_model_path

    path = resolve_model_path(recipe) if recipe.model.path else recipe.model.text_tower
    folder = Path(path) if path and Path(path).is_dir() else None
    use_bf16 = recipe.training.bf16 and device.type == "cuda"
    dtype = "bfloat16" if use_bf16 else "float32"
    inputs = recipe.training.batch_size // world * (2 + recipe.data.negatives_per_query)
    key = memo_key(f"train:{path}", dtype, recipe.model.max_length, device_label(str(device)))
    tuner = new_tuner("auto", str(device), key=key, shape=model_shape(folder, recipe.model.max_length),
                      dtype=dtype, training=True, start=1 << max(0, inputs - 1).bit_length(),
                      what=f"training {path}")
    log.info("gradcache_chunk auto: %d (%s)", tuner.size, tuner.source)
    return tuner


def _by_role(embed: Any, sizes: list[int]) -> Any:
    """Embed queries, positives and negatives as separate batches, then concatenate.

    One tokenised batch pads every short query to the longest document; on the
    CPython FAQ pairs that wasted about a third of a plain step's compute.
    """
    import torch

    def run(inputs: Sequence[Any]) -> Any:
        parts, start = [], 0
        for size in sizes:
            parts.append(embed(inputs[start:start + size]))
            start += size
        return torch.cat(parts)

    return run


def _label_ids(examples: Sequence[TrainExample]) -> dict[str, int]:
    return {
        label: i
        for i, label in enumerate(sorted({ex.label for ex in examples if ex.label is not None}))
    }


# -- data order ----------------------------------------------------------------------------


def _steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    if world > 1:  # equal shares on every device: drop the last partial batch
        if n < batch_size:
            raise VembedError(f"{n} training examples are fewer than one batch of {batch_size}")
        return n // batch_size
    return math.ceil(n / batch_size)


def _batch_indices(
    n: int, batch_size: int, world: int, seed: int, epoch: int, position: int
) -> list[int]:
    import torch

    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator).tolist()
    return order[position * batch_size : (position + 1) * batch_size]


def _shard(indices: list[int], rank: int, world: int) -> list[int]:
    share = len(indices) // world
    return indices[rank * share : (rank + 1) * share]


def _scheduler(optimizer: Any, cfg: Any, total: int) -> Any:
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(cfg.schedule, cfg.schedule)
    return get_scheduler(
        name, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total
    )


# -- checkpoints ---------------------------------------------------------------------------


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint folder with the highest step that finished writing, or ``None``."""
    folder = Path(run_dir) / CHECKPOINTS
    found = sorted(
        (int(p.name.split("-")[1]), p)
        for p in folder.glob("step-*")
        if (p / "state.json").is_file() and p.name.split("-")[1].isdigit()
    )
    return found[-1][1] if found else None


def _save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    loss_module: Any,
    optimizer: Any,
    scheduler: Any,
    keep: int,
) -> Path:
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from vembed_bench.atomic import write_json

    folder = Path(run_dir) / CHECKPOINTS / f"step-{step:07d}"
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {
        f"model.{n}": p.detach().cpu().contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }
    weights.update(
        {f"loss.{n}": p.detach().cpu().contiguous() for n, p in loss_module.named_parameters()}
    )
    weights.update({f"buffer.{n}": b.detach().cpu().contiguous() for n, b in _trained_buffers(model)})
    save_file(weights, str(tmp / "trainable.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    np_state = np.random.get_state()
    rng = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    write_json(tmp / "state.json", {"step": step})  # written last: marks the checkpoint complete
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    old = sorted(p for p in folder.parent.glob("step-*") if not p.name.endswith(".tmp"))
    for stale in old[:-keep] if keep > 0 else []:
        shutil.rmtree(stale, ignore_errors=True)
    return folder


def _trained_buffers(model: Any) -> list[tuple[str, Any]]:
    """Buffers of modules that train (BatchNorm running statistics): resume needs them too."""
    found = []
    for prefix, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            for name, buffer in module.named_buffers(recurse=False):
                found.append((f"{prefix}.{name}" if prefix else name, buffer))
    return found


def _load_checkpoint(
    folder: Path, model: Any, loss_module: Any, optimizer: Any, scheduler: Any
) -> int:
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from vembed_bench.torch_files import load_weights_only

    weights = load_file(str(folder / "trainable.safetensors"))
    targets = {
        "model": dict(model.named_parameters()),
        "loss": dict(loss_module.named_parameters()),
        "buffer": dict(_trained_buffers(model)),
    }
    with torch.no_grad():
        for key, value in weights.items():
            kind, _, name = key.partition(".")
            target = targets.get(kind, {}).get(name)
            if target is None or target.shape != value.shape:
                raise VembedError(
                    f"checkpoint {folder} does not match this model ({name}); "
                    "resume with the recipe the run was started with"
                )
            target.copy_(value)
    optimizer.load_state_dict(load_weights_only(folder / "optimizer.pt"))
    scheduler.load_state_dict(load_weights_only(folder / "scheduler.pt"))
    rng = load_weights_only(folder / "rng.pt")
    random.setstate(_as_tuple(rng["python"]))
    torch.set_rng_state(rng["torch"])
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(json.loads((folder / "state.json").read_text(encoding="utf-8"))["step"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


# -- logging -------------------------------------------------------------------------------


def _restore_log(path: Path, step: int) -> list[dict[str, Any]]:
    """Rows up to ``step`` (rows past a resumed checkpoint are dropped, then re-logged).

    The log is rewritten atomically. A last line cut short by a crash (power loss
    between write and fsync) is dropped: the step it logged is re-run and re-logged.
    """
    from vembed_bench.atomic import atomic_open

    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines):
                raise VembedError(
                    f"{path}:{number}: not a JSON log row; the run's log is damaged: start the "
                    "run again with --overwrite, or delete this line to resume"
                ) from None
            log.warning("%s:%d: dropped a log row cut short by a crash", path, number)
    rows = [row for row in rows if row.get("step", 0) <= step]
    with atomic_open(path) as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return rows


def _append_log(path: Path, row: dict[str, Any]) -> None:
    """One row per call, on disk before the next step (a crash loses at most the row in flight)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class _Writer:
    def __init__(self, tensorboard: Any = None, wandb_run: Any = None) -> None:
        self.tensorboard = tensorboard
        self.wandb_run = wandb_run

    def log(self, row: dict[str, Any]) -> None:
        step = row["step"]
        if self.tensorboard is not None:
            for key in ("loss", "lr", "samples_per_s"):
                self.tensorboard.add_scalar(f"train/{key}", row[key], step)
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def _writer(cfg: Any, run_dir: Path, recipe: Any) -> _Writer | None:
    if cfg.logger == "tensorboard":
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("tensorboard is not installed; logging to train_log.jsonl only")
            return None
        return _Writer(tensorboard=SummaryWriter(str(Path(run_dir) / "tensorboard")))
    if cfg.logger == "wandb":
        try:
            import wandb
        except ImportError:
            raise VembedError("training.logger 'wandb' needs the 'wandb' package") from None
        return _Writer(
            wandb_run=wandb.init(
                project=cfg.wandb_project or "vembed-bench", name=recipe.name, dir=str(run_dir)
            )
        )
    return None


def _progress(total: int, start: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="train", unit="step", disable=not enabled)
