"""Part 0: the environment the numbers were taken in (GPU, driver, CUDA, library versions)."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from common import Part, table

LIBRARIES = (
    "torch",
    "transformers",
    "sentence-transformers",
    "tokenizers",
    "peft",
    "accelerate",
    "bitsandbytes",
    "numpy",
    "safetensors",
    "flash-attn",
    "faiss-gpu-cu12",
    "faiss-cpu",
)


def nvidia_smi() -> str | None:
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                "--format=csv,noheader",
            ],
            capture_output=True,
            check=False,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def body(part: Part):
    torch = part.torch
    rows = [
        ["python", platform.python_version()],
        ["CPU cores", str(os.cpu_count())],
        ["device used", part.device],
        ["sizes", "smoke (tiny)" if part.smoke else "real"],
        ["vembed-bench install", os.environ.get("GPU_CHECK_INSTALL", "not recorded")],
    ]
    data = {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": part.device,
        "install": os.environ.get("GPU_CHECK_INSTALL"),
        "versions": {},
    }
    if part.cuda:
        props = torch.cuda.get_device_properties(0)
        smi = nvidia_smi()
        gpu = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cuda_runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "nvidia_smi": smi,
        }
        data["gpu"] = gpu
        rows[:0] = [
            [
                "GPU",
                (
                    f"{gpu['name']} (sm_{props.major}{props.minor}, {gpu['memory_gib']} GiB, "
                    f"{gpu['multiprocessors']} SMs)"
                ),
            ],
            [
                "nvidia-smi (name, driver, memory, max SM clock, power limit)",
                smi or "not available",
            ],
            ["CUDA (torch build) / cuDNN", f"{gpu['cuda_runtime']} / {gpu['cudnn']}"],
        ]
    for name in LIBRARIES:
        try:
            data["versions"][name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            data["versions"][name] = None
    rows.append(["libraries", ", ".join(f"{k} {v}" for k, v in data["versions"].items() if v)])
    rows.append(
        ["not installed", ", ".join(k for k, v in data["versions"].items() if not v) or "-"]
    )
    return "ok", table(["what", "value"], rows, left=2), data


if __name__ == "__main__":
    Part("env").run(body)
