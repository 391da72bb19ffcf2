"""`accelerate launch` end to end: two CPU processes (gloo) train the same weights as one.

The tiny model has no dropout and the schedule is constant, so a 2-process run
whose global batch is split in halves (with cross-device negatives gathered)
must end at the same weights as a 1-process run over the whole batch. This
checks the pieces together: per-rank data shards, the all-gather that keeps
gradients, DDP's gradient averaging, and that only the main process writes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import tiny_st_folder

pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")

PAIRS = [
    ("how do I copy a list", "use list.copy() or slicing"),
    ("what is a tuple", "an immutable sequence"),
    ("how to read a file", "open it with a with statement"),
    ("why is my loop slow", "profile it before optimising"),
    ("what does yield do", "it makes a generator"),
    ("how do I sort a dict", "sorted(d.items())"),
    ("what is the GIL", "a lock around the interpreter"),
    ("how to format strings", "use f-strings"),
]


def _recipe(tmp_path: Path, model: Path, data: Path) -> Path:
    recipe = {
        "name": "ddp",
        "model": {"path": str(model), "max_length": 32},
        "data": {"train": str(data)},
        "loss": {"name": "infonce", "temperature": 0.1, "symmetric": True},
        "training": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "schedule": "constant",
                     "warmup_ratio": 0.0, "max_grad_norm": None, "logger": "none",
                     "gather_across_devices": True},
    }
    path = tmp_path / "recipe.json"  # JSON is YAML
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def _launch(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(next(folder.rglob("model.safetensors"))))


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="the accelerate CLI is not installed")
def test_two_process_launch_trains_the_same_weights_as_one(tmp_path):
    model = tiny_st_folder(tmp_path / "tiny", dropout=0.0)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in PAIRS))
    recipe = _recipe(tmp_path, model, data)
    cli = [sys.executable, "-m", "vembed_bench.cli", "train", str(recipe), "--no-progress"]
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    # --multi_gpu goes through torchrun; without GPUs each process runs on CPU with gloo
    # (accelerate's --cpu multi-process path needs MPI instead).
    _launch([accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "vembed_bench.cli", "train",
             str(recipe), "--no-progress", "--set", "output_dir=two"], tmp_path)
    _launch([*cli, "--set", "output_dir=one"], tmp_path)

    two, one = tmp_path / "two" / "ddp", tmp_path / "one" / "ddp"
    rows = [json.loads(line) for line in (two / "train_log.jsonl").read_text().splitlines()]
    assert [r["processes"] for r in rows] == [2, 2]  # really two processes; only the main one logs
    base, w1, w2 = _weights(model), _weights(one / "model"), _weights(two / "model")
    assert any(not torch.equal(base[k], w1[k]) for k in base)  # training moved the weights
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=2e-5, rtol=1e-4)
    losses = [[json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()]
              for run in (one, two)]
    assert losses[0] == pytest.approx(losses[1], abs=1e-4)
