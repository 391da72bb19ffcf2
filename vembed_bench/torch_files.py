"""Reading pickled torch files (``.bin``, ``.pt``, ``.pth``) without running their code.

``torch.load`` unpickles, and a pickle can run any code; ``weights_only=True``
allows tensors and plain containers only. A file it refuses is never retried
with ``weights_only=False``: the user gets one line naming the file and the way
out (safetensors), not torch's multi-paragraph traceback.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["load_weights_only"]


def load_weights_only(path: str | Path, **kwargs: Any) -> Any:
    """``torch.load(path, weights_only=True, **kwargs)``; a refused or unreadable file -> VembedError."""
    import torch

    try:
        return torch.load(path, weights_only=True, **kwargs)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        text = str(err)
        if isinstance(err, pickle.UnpicklingError) or "weights_only" in text:
            raise VembedError(
                f"{path}: torch.load(weights_only=True) refuses this file ({_reason(text)}); "
                "vembed-bench does not unpickle code, so convert it to safetensors "
                "(where you trust it: load it once with torch and save_file from safetensors.torch)"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise VembedError(
            f"{path}: not a readable torch file ({first}); download or write it again"
        ) from None


def _reason(text: str) -> str:
    """The useful part of torch's message: what the unpickler met (e.g. an unsupported global)."""
    _, found, rest = text.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (rest if found else text).splitlines() if line.strip()]
    reason = lines[0].split(". Please")[0] if lines else ""
    return reason[:200] or "not a plain tensor file"
