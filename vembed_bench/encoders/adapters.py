"""PEFT / LoRA adapter folders: load the base model, apply the adapter, merge.

An adapter folder holds ``adapter_config.json`` (with ``base_model_name_or_path``)
and ``adapter_model.safetensors``. The base is loaded with its own detected
type (CLIP, vision backbone, timm, Hugging Face text, ...), the adapter is
applied to the base encoder's ``model`` with ``PeftModel.from_pretrained``
and merged (``merge_and_unload``), so inference runs at the base model's
speed. The fingerprint and the weights digest cover the base *and* the
adapter files, so two adapters on one base never share cached embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vembed_bench.encoders.fingerprint import combine, folder_digest
from vembed_bench.encoders.identity import adapter_weights_digest
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

ADAPTER_CONFIG = "adapter_config.json"


def base_model_path(folder: Path) -> str:
    """The adapter's base model: a path (relative to the adapter folder) or a hub id."""
    path = folder / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise VembedError(f"{path}: invalid JSON ({exc})") from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not base:
        raise VembedError(f"{path}: no 'base_model_name_or_path'; cannot tell which model the adapter is for")
    local = Path(base).expanduser()
    if not local.is_absolute() and (folder / local).is_dir():
        return str((folder / local).resolve())
    return str(local) if local.is_dir() else str(base)


def load_adapter_encoder(source: str | Path, options: EncoderOptions = EncoderOptions(), *,
                         folder: Path | None = None) -> Any:
    """Load the base model's encoder, apply and merge the adapter, re-key the fingerprint.

    The options go to the base model's type (detected from the base folder).
    """
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.encoders.naming import display_name

    folder = Path(folder) if folder is not None else Path(source)
    base = base_model_path(folder)
    encoder = load_encoder(base, options.with_(model_type=None, name=options.name or display_name(folder)))
    model = getattr(encoder, "model", None)
    if model is None or not hasattr(model, "named_modules"):
        raise VembedError(f"{folder}: the base model's encoder ({type(encoder).__name__}) exposes no torch "
                          "model to apply the adapter to")
    try:
        from peft import PeftModel
    except ImportError:
        raise VembedError(f"{folder} is a PEFT adapter; install the 'peft' package to load it") from None
    try:
        merged = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VembedError(f"{folder}: cannot apply the adapter to {base}: {first}") from None
    encoder.model = merged.eval()
    base_fp = encoder.fingerprint()
    adapter_digest = folder_digest(folder)
    encoder._fingerprint = combine("peft-adapter", adapter_digest, {"base": base_fp})
    encoder._weights_digest = adapter_weights_digest(adapter_digest, encoder.weights_digest())
    describe = encoder.describe

    def describe_with_adapter() -> dict[str, Any]:
        return {**describe(), "adapter": str(folder), "base_model": base, "base_fingerprint": base_fp}

    encoder.describe = describe_with_adapter  # type: ignore[method-assign]
    return encoder
