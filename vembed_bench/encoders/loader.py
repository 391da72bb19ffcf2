"""``load_encoder``: from a folder, a hub id or a model object to an :class:`Encoder`.

Every loadable kind of model, dense or multi-vector, is an entry of
:data:`MODEL_TYPES` (a :class:`~vembed_bench.registry.Registry`). An entry's
target is its factory, called as ``factory(source, options, folder=folder)``
with typed :class:`~vembed_bench.options.EncoderOptions`; its metadata says:

* ``detect(folder) -> bool``: whether the type claims a local folder, judged
  from its small JSON files (no weights are read). Detectors run in registry
  order, the most specific first; ``model_type`` overrides detection;
* ``multi_vector``: a late-interaction model (ColBERT, ColPali), scored with MaxSim;
* ``options``: the type-specific option names it takes (``attention`` for LLMs,
  ``processor`` for VLMs, ``num_workers`` for image models...). Setting one
  for a type that does not declare it is refused in one line.

Options arrive typed: :func:`load_encoder` also takes them as keywords, which
are turned into :class:`EncoderOptions` once (unknown names refused); nothing
below inspects signatures. Importing this module is cheap: each encoder module
(and torch) is imported only when that type is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from vembed_bench.encoders import folders
from vembed_bench.encoders import multivector_types as _mv
from vembed_bench.encoders import vision_detect as _vision_detect
from vembed_bench.encoders.base import Encoder
from vembed_bench.encoders.folders import looks_like_hub_id
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions
from vembed_bench.registry import Entry, Registry

__all__ = [
    "MODEL_TYPES", "ModelType", "as_options", "check_type_options", "detect_model_type",
    "is_multivector_model", "load_encoder", "load_multivector_encoder", "looks_like_hub_id",
    "model_type_names", "register_model_type", "resolve_model_type",
]

COMMON_OPTIONS = frozenset({"model_type", "name", "pooling", "query_prompt", "document_prompt",
                            "max_length", "device", "devices", "dtype", "trust_remote_code",
                            "show_progress"})
"""Options every type takes (a type may still refuse a value, e.g. pooling for CLIP)."""
TYPE_OPTIONS = frozenset(f.name for f in fields(EncoderOptions)) - COMMON_OPTIONS
"""Options that only the types declaring them take."""
IMAGE_OPTIONS = frozenset({"num_workers", "skip_bad_images"})
BATCH_OPTIONS = frozenset({"max_batch_tokens"})
LLM_OPTIONS = frozenset({"attention", "attn_implementation", "padding_side", "instruction",
                         "instruction_separator", "tokenizer"}) | BATCH_OPTIONS
VLM_OPTIONS = frozenset({"instruction", "processor", "image_placeholder"})

MODEL_TYPES: Registry[Callable[..., Encoder]] = Registry("model type")
"""Registered model types in detection order; meta: ``detect``, ``multi_vector``, ``options``."""


@dataclass(frozen=True)
class ModelType:
    """A model type described as one value, for :func:`register_model_type`."""

    name: str
    factory: str | Callable[..., Encoder]
    detect: Callable[[Path], bool] | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    multi_vector: bool = False
    options: frozenset[str] = frozenset()


def register_model_type(model_type: ModelType, *, first: bool = False) -> None:
    """Add (or replace) a model type; ``first=True`` makes its detector run before the others.

    Same as ``MODEL_TYPES.register`` / ``MODEL_TYPES.lazy`` with the type's metadata.
    """
    meta = {"detect": model_type.detect, "multi_vector": model_type.multi_vector,
            "options": frozenset(model_type.options)}
    if isinstance(model_type.factory, str):
        MODEL_TYPES.lazy(model_type.name, model_type.factory, aliases=model_type.aliases, first=first, **meta)
    else:
        MODEL_TYPES.register(model_type.name, model_type.factory, aliases=model_type.aliases, first=first, **meta)


def _detect_hf(folder: Path) -> bool:
    cfg = folders.hf_config(folder)
    return cfg is not None and folders.is_text_encoder_config(cfg)


def _detect_llm(folder: Path) -> bool:
    from vembed_bench.encoders.llm_encoder import is_causal_lm_folder

    return is_causal_lm_folder(folder)


def _detect_vlm(folder: Path) -> bool:
    from vembed_bench.encoders.vlm_encoder import is_vlm_folder

    return is_vlm_folder(folder)


# Registration order is detection order: late interaction first (a ColBERT folder is also a
# BERT folder, a PyLate one also a sentence-transformers one), then a Qwen-VL config before
# the LLM detector (it also names a causal LM), image models before "hf" (a ViT/DINOv2 config
# is an *Model architecture too), and the general text detectors last.
_ENC = "vembed_bench.encoders"
MODEL_TYPES.lazy("colvision", f"{_ENC}.colvision:ColVisionEncoder", aliases=("colpali", "colqwen2"),
                 detect=_mv.is_colvision_folder, multi_vector=True, options=frozenset({"processor"}))
MODEL_TYPES.lazy("colbert", f"{_ENC}.colbert:ColBERTEncoder", aliases=("pylate",),
                 detect=_mv.is_colbert_folder, multi_vector=True, options=BATCH_OPTIONS)
MODEL_TYPES.lazy("vlm", f"{_ENC}.vlm_encoder:VLMEncoder", aliases=("qwen-vl", "vlm2vec"),
                 detect=_detect_vlm, options=VLM_OPTIONS)
MODEL_TYPES.lazy("vision", f"{_ENC}.vision_encoder:VisionEncoder", aliases=("image", "dinov2", "vit", "backbone"),
                 detect=_vision_detect.is_vision_folder, options=IMAGE_OPTIONS)
MODEL_TYPES.lazy("timm", f"{_ENC}.timm_encoder:TimmEncoder", aliases=("timm-backbone",),
                 detect=_vision_detect.is_timm_folder, options=IMAGE_OPTIONS)
MODEL_TYPES.lazy("composed", f"{_ENC}.composed:ComposedEncoder", aliases=("two-tower",),
                 detect=_vision_detect.is_composed_folder, options=TYPE_OPTIONS, delegates=True)
MODEL_TYPES.lazy("open_clip", f"{_ENC}.open_clip_encoder:OpenCLIPEncoder",
                 aliases=("openclip", "open-clip", "eva-clip"),
                 detect=_vision_detect.is_open_clip_folder, options=IMAGE_OPTIONS)
MODEL_TYPES.lazy("peft-adapter", f"{_ENC}.adapters:load_adapter_encoder", aliases=("peft", "lora", "adapter"),
                 detect=_vision_detect.is_adapter_folder, options=TYPE_OPTIONS, delegates=True)
MODEL_TYPES.lazy("clip", f"{_ENC}.clip_encoder:CLIPEncoder", aliases=("siglip", "siglip2", "clip-like"),
                 detect=_vision_detect.is_clip_folder, options=IMAGE_OPTIONS)
MODEL_TYPES.lazy("sentence-transformers", f"{_ENC}.st_encoder:load_st_folder",
                 aliases=("st", "sentence_transformers", "sbert"), detect=folders.is_st_folder,
                 options=BATCH_OPTIONS)
MODEL_TYPES.lazy("hf", f"{_ENC}.hf_encoder:HFEncoder", aliases=("huggingface", "transformers", "auto"),
                 detect=_detect_hf, options=BATCH_OPTIONS)
MODEL_TYPES.lazy("llm", f"{_ENC}.llm_encoder:LLMEncoder", aliases=("decoder", "causal-lm", "causal_lm"),
                 detect=_detect_llm, options=LLM_OPTIONS)


def model_type_names() -> list[str]:
    return MODEL_TYPES.names()


def resolve_model_type(name: str) -> Entry:
    """Look a type up by name or alias (case-insensitive); a one-line error lists the choices."""
    return MODEL_TYPES.entry(name)


def detect_model_type(folder: str | Path, *, multi_vector: bool | None = None) -> Entry:
    """The first registered type whose detector claims the folder, else a one-line error.

    ``multi_vector=True`` only considers late-interaction types and falls back to
    ``colbert`` (any encoder folder scored token by token); ``False`` only dense ones.
    """
    path = Path(folder)
    for entry in MODEL_TYPES.entries():
        if multi_vector is not None and bool(entry.meta.get("multi_vector")) != multi_vector:
            continue
        detect = entry.meta.get("detect")
        if detect is not None and detect(path):
            return entry
    if multi_vector:
        return MODEL_TYPES.entry("colbert")
    raise VembedError(
        f"cannot tell what kind of model {path} is (no modules.json, or config.json of a "
        f"text encoder); pass --model-type ({'|'.join(model_type_names())})"
    )


def as_options(options: EncoderOptions | Mapping[str, Any] | None = None, values: Mapping[str, Any] | None = None
               ) -> EncoderOptions:
    """The typed boundary: ``options`` plus keyword ``values`` as one :class:`EncoderOptions`."""
    if isinstance(options, EncoderOptions) and not values:
        return options
    base = options.to_dict() if isinstance(options, EncoderOptions) else dict(options or {})
    return EncoderOptions.build({**base, **(values or {})})


def check_type_options(entry: Entry, options: EncoderOptions) -> None:
    """Refuse, in one line, type-specific options that ``entry``'s type does not declare."""
    declared = frozenset(entry.meta.get("options", ()))
    misplaced = sorted(name for name in options.overrides() if name in TYPE_OPTIONS and name not in declared)
    if not misplaced:
        return
    owners = [e.name for e in MODEL_TYPES.entries()
              if not e.meta.get("delegates") and set(misplaced) & set(e.meta.get("options", ()))]
    owners = owners or ["another"]
    raise VembedError(
        f"option(s) {', '.join(misplaced)} do not apply to {entry.name} models; "
        f"they are for {' / '.join(owners)} models (--model-type {owners[0]})"
    )


def load_encoder(model: str | Path | object, options: EncoderOptions | None = None,
                 **option_values: Any) -> Encoder:
    """Build an :class:`Encoder` from a local folder, a hub id (``org/name``) or a model object.

    ``options`` (or the same fields as keywords, e.g. ``pooling="mean"``): see
    :class:`EncoderOptions`. ``query_prompt`` / ``document_prompt``: ``None``
    uses the model's stored prompts; ``""`` switches them off; a string with
    ``{text}`` (and optionally ``{instruction}``) is a template. ``dtype``
    defaults to bf16 on CUDA and fp32 elsewhere. Raises :class:`VembedError`
    with a one-line message for anything the user can fix.
    """
    options = as_options(options, option_values)
    if not isinstance(model, (str, Path)):
        return _wrap_object(model, options)
    return _load_source(model, options, multi_vector=None)


def load_multivector_encoder(model: Any, options: EncoderOptions | None = None, **option_values: Any) -> Any:
    """The late-interaction encoder of a folder or hub id (a ColPali/ColQwen2 folder, else
    ColBERT-style, or the type ``model_type`` names); an encoder object passes through."""
    options = as_options(options, option_values)
    if not isinstance(model, (str, Path)):
        if not hasattr(model, "encode_queries_multi"):
            raise VembedError(f"{type(model).__name__} is not a multi-vector encoder "
                              "(no encode_queries_multi / encode_documents_multi)")
        return model
    return _load_source(model, options, multi_vector=True)


def is_multivector_model(model: Any, options: EncoderOptions | Mapping[str, Any] | None = None) -> bool:
    """Whether ``model`` (a folder, hub id or encoder object) is evaluated with MaxSim."""
    if not isinstance(model, (str, Path)):
        return bool(getattr(model, "multi_vector", False)) and hasattr(model, "encode_queries_multi")
    model_type = options.model_type if isinstance(options, EncoderOptions) else (options or {}).get("model_type")
    if model_type:
        return model_type in MODEL_TYPES and bool(MODEL_TYPES.entry(model_type).meta.get("multi_vector"))
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return False
    try:
        return bool(detect_model_type(folder).meta.get("multi_vector"))
    except VembedError:
        return False


def _wrap_object(model: object, options: EncoderOptions) -> Encoder:
    for_folders = ("model_type", "pooling", "device", "dtype", *sorted(TYPE_OPTIONS))
    if any(name in options.overrides() for name in for_folders):
        raise VembedError("model_type, pooling, device, dtype and type-specific options apply to model "
                          "folders; set them on the model object before passing it")
    from vembed_bench.encoders.wrapped import wrap_model

    return wrap_model(model, options)


def _load_source(model: str | Path, options: EncoderOptions, *, multi_vector: bool | None) -> Encoder:
    source, folder, entry = resolve_source(model, options, multi_vector=multi_vector)
    return entry.load()(source, options, folder=folder)


def resolve_source(model: str | Path, options: EncoderOptions, *, multi_vector: bool | None = None,
                   fetch: bool = True) -> tuple[str, Path | None, Entry | None]:
    """(source, folder, model type) of a folder or hub id, checked without loading any weights.

    A missing path, a file, an undetectable folder or an option the type does not
    take is one :class:`VembedError` line. With ``fetch=False`` a hub id is only
    recognised as one (no download; folder and type are None).
    """
    text = str(model)
    path = Path(text).expanduser()
    if path.is_dir():
        source, folder = str(path), path
    elif path.exists():
        raise VembedError(f"model path {text} is a file; pass the model's folder instead")
    elif not looks_like_hub_id(text):
        raise VembedError(
            f"model path {text} does not exist; pass a local folder with the model files "
            "(or a Hugging Face hub id such as org/name)"
        )
    elif not fetch:
        return text, None, None
    else:
        source, folder = text, _hub_snapshot(text)
    if options.model_type:
        entry = resolve_model_type(options.model_type)
        if multi_vector and not entry.meta.get("multi_vector"):
            late = [e.name for e in MODEL_TYPES.entries() if e.meta.get("multi_vector")]
            raise VembedError(f"model type {options.model_type!r} is not multi-vector; choose one of "
                              f"{', '.join(late)}")
    else:
        entry = detect_model_type(folder, multi_vector=True if multi_vector else None)
    check_type_options(entry, options)
    return source, folder, entry


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
