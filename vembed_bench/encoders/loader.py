"""``load_encoder``: from a folder, a hub id or a model object to an :class:`Encoder`.

The model type is detected from the folder's small JSON files (no weights are
read), in registry order: ``modules.json`` / ``config_sentence_transformers.json``
means sentence-transformers, a ``config.json`` of an encoder architecture means
a plain Hugging Face model. ``model_type`` overrides detection. Later model
kinds (CLIP, vision, LLM, VLM) add themselves with :func:`register_model_type`.

Importing this module is cheap: each encoder module (and torch) is imported
only when that type is loaded.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vembed_bench.encoders import folders
from vembed_bench.encoders.base import Encoder
from vembed_bench.errors import VembedError

# A hub id is "org/name": two non-empty parts of letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^(?!\.{1,2}/)[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]$")


@dataclass(frozen=True)
class ModelType:
    """One loadable kind of model.

    ``factory`` is ``"module:attribute"`` (imported on use, so registering costs
    nothing) or a callable; it is called as ``factory(source, folder=..., **options)``.
    ``detect`` looks at a local folder and says whether this type claims it.
    """

    name: str
    factory: str | Callable[..., Encoder]
    detect: Callable[[Path], bool] | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def load(self, source: str, **options: Any) -> Encoder:
        factory = self.factory
        if isinstance(factory, str):
            module, _, attr = factory.partition(":")
            factory = getattr(importlib.import_module(module), attr)
        return factory(source, **options)


def _detect_hf(folder: Path) -> bool:
    cfg = folders.hf_config(folder)
    return cfg is not None and folders.is_text_encoder_config(cfg)


MODEL_TYPES: dict[str, ModelType] = {}
"""Registered model types, in detection order."""


def register_model_type(model_type: ModelType, *, first: bool = False) -> None:
    """Add (or replace) a model type; ``first=True`` makes its detector run before the others."""
    MODEL_TYPES.pop(model_type.name, None)
    if first:
        items = [(model_type.name, model_type), *MODEL_TYPES.items()]
        MODEL_TYPES.clear()
        MODEL_TYPES.update(items)
    else:
        MODEL_TYPES[model_type.name] = model_type


register_model_type(
    ModelType(
        "sentence-transformers",
        "vembed_bench.encoders.st_encoder:STEncoder",
        folders.is_st_folder,
        aliases=("st", "sentence_transformers", "sbert"),
    )
)
register_model_type(
    ModelType(
        "hf",
        "vembed_bench.encoders.hf_encoder:HFEncoder",
        _detect_hf,
        aliases=("huggingface", "transformers", "auto"),
    )
)


def _detect_llm(folder: Path) -> bool:
    from vembed_bench.encoders.llm_encoder import is_causal_lm_folder

    return is_causal_lm_folder(folder)


register_model_type(
    ModelType(
        "llm",
        "vembed_bench.encoders.llm_encoder:LLMEncoder",
        _detect_llm,
        aliases=("decoder", "causal-lm", "causal_lm"),
    )
)


# Image models (issue 3). Their detectors read config.json only; first=True because
# the plain "hf" detector would also accept a ViT/DINOv2 config (an *Model architecture).
from vembed_bench.encoders import vision_detect as _vision_detect  # noqa: E402

register_model_type(
    ModelType("clip", "vembed_bench.encoders.clip_encoder:CLIPEncoder",
              _vision_detect.is_clip_folder, aliases=("siglip", "siglip2", "clip-like")),
    first=True,
)
register_model_type(
    ModelType("peft-adapter", "vembed_bench.encoders.adapters:load_adapter_encoder",
              _vision_detect.is_adapter_folder, aliases=("peft", "lora", "adapter")),
    first=True,
)
register_model_type(
    ModelType("open_clip", "vembed_bench.encoders.open_clip_encoder:OpenCLIPEncoder",
              _vision_detect.is_open_clip_folder, aliases=("openclip", "open-clip", "eva-clip")),
    first=True,
)
register_model_type(
    ModelType("composed", "vembed_bench.encoders.composed:ComposedEncoder",
              _vision_detect.is_composed_folder, aliases=("two-tower",)),
    first=True,
)
register_model_type(
    ModelType("timm", "vembed_bench.encoders.timm_encoder:TimmEncoder",
              _vision_detect.is_timm_folder, aliases=("timm-backbone",)),
    first=True,
)
register_model_type(
    ModelType("vision", "vembed_bench.encoders.vision_encoder:VisionEncoder",
              _vision_detect.is_vision_folder, aliases=("image", "dinov2", "vit", "backbone")),
    first=True,
)


def _detect_vlm(folder: Path) -> bool:
    from vembed_bench.encoders.vlm_encoder import is_vlm_folder

    return is_vlm_folder(folder)


register_model_type(
    ModelType("vlm", "vembed_bench.encoders.vlm_encoder:VLMEncoder", _detect_vlm, aliases=("qwen-vl", "vlm2vec")),
    first=True,  # before "llm": a Qwen-VL config also names a causal LM architecture
)


def model_type_names() -> list[str]:
    return list(MODEL_TYPES)


def resolve_model_type(name: str) -> ModelType:
    """Look a type up by name or alias (case-insensitive)."""
    key = name.strip().lower()
    for model_type in MODEL_TYPES.values():
        if key == model_type.name or key in model_type.aliases:
            return model_type
    raise VembedError(
        f"unknown model type {name!r}; choose one of {', '.join(model_type_names())}"
    )


def detect_model_type(folder: str | Path) -> ModelType:
    """The first registered type whose detector claims the folder, else a one-line error."""
    path = Path(folder)
    for model_type in MODEL_TYPES.values():
        if model_type.detect is not None and model_type.detect(path):
            return model_type
    raise VembedError(
        f"cannot tell what kind of model {path} is (no modules.json, or config.json of a "
        f"text encoder); pass --model-type ({'|'.join(model_type_names())})"
    )


def looks_like_hub_id(text: str) -> bool:
    """``org/name`` and not something path-like (absolute, ``./``, ``~``, backslashes)."""
    return bool(_HUB_ID.match(text)) and ".." not in text


def load_encoder(
    model: str | Path | object,
    *,
    model_type: str | None = None,
    pooling: str | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
    max_length: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    trust_remote_code: bool = False,
    show_progress: bool = True,
    name: str | None = None,
    **extra_options: Any,
) -> Encoder:
    """Build an :class:`Encoder` from a local folder, a hub id (``org/name``) or a model object.

    ``query_prompt`` / ``document_prompt``: ``None`` uses the model's stored
    prompts (sentence-transformers ``prompts``); ``""`` switches them off; a
    string with ``{text}`` (and optionally ``{instruction}``) is a template.
    ``dtype`` defaults to bf16 on CUDA and fp32 elsewhere. Raises
    :class:`VembedError` with a one-line message for anything the user can fix.
    """
    if not isinstance(model, (str, Path)):
        if (model_type is not None or pooling is not None or device is not None or dtype is not None
                or extra_options):
            raise VembedError(
                "model_type, pooling, device and dtype apply to model folders; "
                "set them on the model object before passing it"
            )
        from vembed_bench.encoders.wrapped import wrap_model

        return wrap_model(
            model,
            name=name,
            query_prompt=query_prompt,
            document_prompt=document_prompt,
            max_length=max_length,
            show_progress=show_progress,
        )

    options: dict[str, Any] = {
        "name": name,
        "pooling": pooling,
        "query_prompt": query_prompt,
        "document_prompt": document_prompt,
        "max_length": max_length,
        "device": device,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "show_progress": show_progress,
        **extra_options,  # type-specific options (e.g. the LLM encoder's attention, instruction)
    }
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        chosen = resolve_model_type(model_type) if model_type else detect_model_type(path)
        _check_extra_options(chosen, extra_options)
        return chosen.load(str(path), folder=path, **options)
    if path.exists():
        raise VembedError(f"model path {text} is a file; pass the model's folder instead")
    if not looks_like_hub_id(text):
        raise VembedError(
            f"model path {text} does not exist; pass a local folder with the model files "
            "(or a Hugging Face hub id such as org/name)"
        )
    snapshot = _hub_snapshot(text)
    chosen = resolve_model_type(model_type) if model_type else detect_model_type(snapshot)
    _check_extra_options(chosen, extra_options)
    return chosen.load(text, folder=snapshot, **options)


# Options only some types take: refused in one line for the others (not a TypeError).
_TYPE_OPTIONS = {
    "llm": frozenset({"attention", "attn_implementation", "padding_side", "instruction",
                      "instruction_separator", "tokenizer"}),
    "vlm": frozenset({"instruction", "processor", "image_placeholder"}),
}


def _check_extra_options(chosen: ModelType, extra: dict[str, Any]) -> None:
    known = frozenset().union(*_TYPE_OPTIONS.values())
    allowed = _TYPE_OPTIONS.get(chosen.name, frozenset())
    misplaced = sorted(k for k in extra if k in known and k not in allowed)
    if misplaced:
        owners = sorted(t for t, opts in _TYPE_OPTIONS.items() if set(misplaced) & opts)
        raise VembedError(
            f"option(s) {', '.join(misplaced)} do not apply to {chosen.name} models; "
            f"they are for {' / '.join(owners)} encoders (--model-type {owners[0]})"
        )


def _hub_snapshot(repo_id: str) -> Path:
    """Fetch only the repo's JSON metadata (configs) and return the snapshot folder.

    Detection then reads the same small files as for a local folder, and the
    library downloads the weights into the same snapshot when it loads, so the
    folder fingerprint covers them too. Offline, a repo that is not in the
    local cache fails here with a one-line error.
    """
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*/*.json"]))
    except Exception as exc:  # network, auth, missing repo: all user-fixable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VembedError(
            f"model {repo_id} is not a local folder and could not be fetched from the "
            f"Hugging Face hub ({type(exc).__name__}: {first}); pass a local folder"
        ) from None
