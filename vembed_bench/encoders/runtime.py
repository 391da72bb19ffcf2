"""Where and how a model runs: device, dtype, progress bar, library versions.

Shared by every torch-backed encoder so that defaults are the same everywhere:
the fastest available device (cuda > mps > cpu), bf16 on CUDA (half the memory
and several times the matmul rate, with retrieval scores that match fp32 to
the third decimal), fp32 elsewhere (CPU bf16 is slow on most CPUs and MPS bf16
support varies). The dtype actually used is recorded in ``describe()``.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vembed_bench.errors import VembedError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch

_DTYPE_ALIASES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}

CPU_BATCH_TOKENS = 8192
"""Padded tokens per batch on CPU: a bound on activation memory (32 texts of 256
tokens), not a speed knob. A cap of 512 tokens was measured 4-5x slower than
sentence-transformers' own batches of 32 on MiniLM (2-core CPU, 2026-11-25), so
batches stay as large as the user's batch size up to this bound."""

_VERSIONED = ("torch", "transformers", "sentence-transformers", "tokenizers", "numpy")


def pick_device(device: str | None = None) -> str:
    """The requested device, else cuda > mps > cpu."""
    import torch

    if device:
        try:
            torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise VembedError(f"--device {device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise VembedError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def load_errors() -> tuple[type[BaseException], ...]:
    """What the libraries raise for a model folder they cannot load: missing or damaged files
    (a cut ``.safetensors``, a garbled JSON config), weights of the wrong shape, unknown types."""
    errors: list[type[BaseException]] = [OSError, ValueError, KeyError, ImportError, RuntimeError]
    try:
        from safetensors import SafetensorError

        errors.append(SafetensorError)
    except ImportError:  # pragma: no cover - installed with transformers
        pass
    return tuple(errors)


def load_failure(source: Any, kind: str, exc: BaseException) -> VembedError:
    """One line for a model the library could not load, naming the damaged file if one is found."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    damaged = damaged_file(source)
    return VembedError(f"cannot load {source} as {kind}: " + (f"{damaged} is damaged ({first})" if damaged
                                                              else first))


def damaged_file(source: Any) -> Path | None:
    """The first JSON file of a model folder that does not parse, or ``.safetensors`` file whose
    header does not (library errors often name neither); None for hub ids and sound folders."""
    folder = Path(str(source))
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return path
    for path in sorted(folder.rglob("*.safetensors")):
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                handle.keys()
        except Exception:  # noqa: BLE001 - any failure to read the header means a damaged file
            return path
    return None


def resolve_dtype(dtype: str | None, device: str) -> str:
    """Canonical dtype name: the user's choice, else bf16 on CUDA and fp32 elsewhere."""
    if dtype is None or dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    try:
        return _DTYPE_ALIASES[dtype.lower()]
    except KeyError:
        choices = ", ".join(sorted(set(_DTYPE_ALIASES.values())))
        raise VembedError(f"unknown dtype {dtype!r}; choose one of {choices}") from None


def torch_dtype(name: str) -> "torch.dtype":
    """``"bfloat16"`` -> ``torch.bfloat16``."""
    import torch

    return getattr(torch, _DTYPE_ALIASES.get(name, name))


def role_label(role: str, items: Any = ()) -> str:
    """What a progress bar counts: "images" when every item is an image, else "queries" or "documents"."""
    if items and all(getattr(item, "image", None) is not None for item in items):
        return "images"
    return {"query": "queries", "document": "documents"}.get(role, f"{role}s")


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr counting items; a silent no-op bar when disabled.

    tqdm rather than rich: it is already a dependency of transformers and
    sentence-transformers, and it does not take over the terminal the way a
    rich Live display does, so it coexists with the CLI's own rich output.
    """
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="item",
        disable=not enabled,
        leave=False,
        dynamic_ncols=True,
    )


def library_versions(names: tuple[str, ...] = _VERSIONED) -> dict[str, str]:
    """Installed versions of the libraries that shape the embeddings (no imports needed)."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
