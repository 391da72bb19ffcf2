"""A result's identity: which settings make two runs of one model on one task different.

Two results answer the same question when the weights, the data and these
settings are equal. The settings are everything else that moves a number: the
query sample (``limit`` and its ``seed``), a Matryoshka ``dim``, an approximate
``index``, the multi-vector search, the dtype, and every encoder option the user
overrode (prompts, max length, pooling, attention, instruction...). Options that
only change speed (batch size, device, workers, search backend among the exact
ones) are left out.

:func:`settings_key` turns the settings into a short readable label that becomes
part of the result's file name (``test.limit20-seed0.json``,
``test.dim256.json``, ``test.max_length128_pooling-mean.json``); the canonical
run, a full split with the model's defaults, has the empty label and keeps the
plain ``test.json``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from vembed_bench.options import EncoderOptions, EvalOptions

# Encoder overrides whose values are free text: shown as a short hash in the label.
_HASHED = ("query_prompt", "document_prompt", "instruction", "instruction_separator", "tokenizer",
           "processor", "image_placeholder")
_MAX_LABEL = 80


def expected_dtype(options: EncoderOptions) -> str:
    """The dtype an encoder will run in, without importing torch: the user's, else bf16 on
    CUDA and fp32 elsewhere (what :func:`vembed_bench.encoders.runtime.resolve_dtype` picks)."""
    from vembed_bench.encoders.runtime import resolve_dtype

    device = options.device or ("cuda" if gpu_present() else "cpu")
    return resolve_dtype(options.dtype, device)


def gpu_present() -> bool:
    """Whether an NVIDIA device node exists (a torch-free hint; the encoder has the last word)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def settings_of(eval_options: EvalOptions, encoder_options: EncoderOptions, *, limit: int | None,
                multi_vector: bool = False, dim: int | None = None, dtype: str | None = None) -> dict[str, Any]:
    """The settings that identify a result (see the module docstring).

    ``limit`` is the query sample actually drawn (None when every query is
    evaluated, also when ``--limit`` is at least the number of queries);
    ``dtype`` the one the encoder reported (else the expected one).
    """
    settings: dict[str, Any] = {
        "limit": limit,
        "seed": eval_options.seed if limit else None,
        "dim": dim,
        "index": eval_options.index,
        "maxsim": eval_options.maxsim if multi_vector else None,
        "candidate_depth": eval_options.candidate_depth if multi_vector and eval_options.maxsim != "exact" else None,
        "dtype": dtype or expected_dtype(encoder_options),
        "encoder": {k: v for k, v in sorted(encoder_options.vector_settings().items()) if k != "dtype"},
    }
    return settings


def settings_key(settings: dict[str, Any]) -> str:
    """A short label of the non-default settings; "" for the canonical run."""
    parts: list[str] = []
    if settings.get("limit"):
        parts.append(f"limit{settings['limit']}-seed{settings.get('seed') or 0}")
    if settings.get("dim"):
        parts.append(f"dim{settings['dim']}")
    if settings.get("index", "flat") != "flat":
        parts.append(f"index-{_hash(settings['index']) if len(settings['index']) > 16 else settings['index']}")
    if settings.get("maxsim") == "faiss":
        parts.append(f"maxsim-faiss{settings.get('candidate_depth')}")
    if settings.get("dtype", "float32") != "float32":
        parts.append({"bfloat16": "bf16", "float16": "fp16"}.get(settings["dtype"], str(settings["dtype"])))
    for name, value in sorted((settings.get("encoder") or {}).items()):
        if name in _HASHED or value in ("", None) or isinstance(value, (dict, list)):
            parts.append(f"{name}-{_hash(value)}")
        elif isinstance(value, bool):
            parts.append(name if value else f"no-{name}")
        else:
            parts.append(f"{name}-{value}" if not isinstance(value, int) else f"{name}{value}")
    label = re.sub(r"[^A-Za-z0-9_-]+", "-", "_".join(parts))
    return label if len(label) <= _MAX_LABEL else f"s-{_hash(settings, 12)}"


def _hash(value: Any, length: int = 6) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]
