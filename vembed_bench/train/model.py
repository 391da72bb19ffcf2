"""The trainable model: what ``model.type`` builds, and how it is saved and evaluated.

Text models train as a ``SentenceTransformer`` whatever the input folder was (a
sentence-transformers folder, or a plain HF encoder wrapped with a Pooling
module), so the output is a standard sentence-transformers folder that loads
unchanged in ``SentenceTransformer(...)``, ``AutoModel`` and ``vembed-bench eval
--model``. LoRA adapters are merged before saving, so the output needs no peft;
the adapter alone is saved beside it for reference.

Other model types (timm image backbones, composed image-text encoders, decoder
LLMs) live in :mod:`vembed_bench.train.backends` and follow the same protocol
as ``SentenceTransformer``, so one loop (GradCache, DDP, checkpoints) trains them all:

* ``tokenize(inputs) -> dict`` of tensors for a list of :data:`~.data.TrainInput`
  (texts and :class:`~.data.ImageInput`), without gradients;
* ``forward(features) -> {"sentence_embedding": Tensor}``, with gradients;
* ``save_trained(folder, prompts) -> Path`` writes a folder that ``vembed-bench
  eval --model`` loads with the same preprocessing, pooling and attention;
* ``accepts``: the input kinds it embeds (``{"text"}``, ``{"image"}`` or both).

Each backend module also has ``eval_options(recipe, tuned) -> dict``: the
``load_encoder`` options that score the base model (``tuned=False``) and the
saved folder (``tuned=True``) the way training embeds them. Backend modules are
entries of :data:`TRAINING_BACKENDS` (registered lazily by module name).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from vembed_bench.errors import VembedError
from vembed_bench.registry import Registry

__all__ = [
    "INPUT_KINDS",
    "TRAINABLE_TYPES",
    "TRAINING_BACKENDS",
    "accepted_inputs",
    "build_model",
    "eval_options",
    "merged_copy",
    "model_kind",
    "embed_inputs",
    "merge_adapter",
    "resolve_model_path",
    "save_model",
    "trainable_inputs",
    "with_lora",
]


def resolve_model_path(recipe: Any) -> str:
    """``model.path`` as a loadable folder or hub id; ``pip:<module>/<subdir>`` finds a package folder."""
    value = recipe.model.path
    if value.startswith("pip:"):
        module, _, sub = value[4:].partition("/")
        spec = importlib.util.find_spec(module)  # no import: the package may have heavy deps
        if spec is None or spec.origin is None:
            raise VembedError(
                f"{recipe.source}: model.path {value}: the package '{module}' is not installed"
            )
        return str(Path(spec.origin).parent / sub)
    path = recipe.resolve_path(value, "model.path")
    if path.exists():
        return str(path)
    from vembed_bench.encoders.loader import looks_like_hub_id

    if looks_like_hub_id(value):
        return value
    raise VembedError(f"{recipe.source}: model.path {value} does not exist (looked at {path})")


_TEXT_TYPES = ("sentence-transformers", "st", "hf")
"""Trained here as a SentenceTransformer (see the module docstring), not by a backend module."""
_TEXT = frozenset({"text"})
_IMAGE = frozenset({"image"})
_BOTH = _TEXT | _IMAGE

TRAINING_BACKENDS: Registry[ModuleType] = Registry(
    "trainable model type", hint=f"(or {', '.join(_TEXT_TYPES)}, trained as sentence-transformers)")
"""model.type -> the backend module that builds it (``build(recipe, device)``, ``eval_options``);
``inputs`` in its metadata: what it embeds, known before it is loaded (the built model's ``accepts``)."""
_BACKENDS = "vembed_bench.train.backends"
TRAINING_BACKENDS.lazy("timm", f"{_BACKENDS}.timm_backend", inputs=_IMAGE)
TRAINING_BACKENDS.lazy("composed", f"{_BACKENDS}.composed_backend", inputs=_BOTH)
TRAINING_BACKENDS.lazy("llm", f"{_BACKENDS}.llm_backend", inputs=_TEXT)
TRAINING_BACKENDS.lazy("vision", f"{_BACKENDS}.hf_vision_backend", inputs=_IMAGE)
TRAINING_BACKENDS.lazy("clip", f"{_BACKENDS}.hf_vision_backend", inputs=_BOTH)
TRAINING_BACKENDS.lazy("vlm", f"{_BACKENDS}.vlm_backend", inputs=_BOTH)
TRAINABLE_TYPES = TRAINING_BACKENDS
"""The old name of :data:`TRAINING_BACKENDS`."""
INPUT_KINDS = {**{e.name: e.meta["inputs"] for e in TRAINING_BACKENDS.entries()},
               **{kind: _TEXT for kind in _TEXT_TYPES}}
"""What a model of each type embeds, known before it is loaded (the built model's ``accepts``)."""


def model_kind(recipe: Any) -> str:
    """``model.type``, or for ``auto`` the type the eval loader detects in the folder."""
    kind = recipe.model.type
    if kind != "auto":
        return kind
    folder = Path(resolve_model_path(recipe))
    if not folder.is_dir():
        return "sentence-transformers"  # a hub id: sentence-transformers loads either kind
    from vembed_bench.encoders.loader import detect_model_type

    return detect_model_type(folder).name


def trainable_inputs(kind: str) -> frozenset[str]:
    """The inputs a model of type ``kind`` embeds; refuses a type that cannot be trained."""
    if kind not in INPUT_KINDS:
        choices = ", ".join(["sentence-transformers", "hf", *TRAINING_BACKENDS.names()])
        raise VembedError(f"model.type {kind!r} cannot be trained; choose one of {choices}")
    return INPUT_KINDS[kind]


def _backend(kind: str) -> ModuleType:
    trainable_inputs(kind)  # refuses a type that cannot be trained
    return TRAINING_BACKENDS.get(kind)


def build_model(recipe: Any, *, device: str = "cpu") -> Any:
    """Load the recipe's model for training (see the module docstring), with freezing and LoRA."""
    kind = model_kind(recipe)
    if kind not in _TEXT_TYPES:
        model = _backend(kind).build(recipe, device=device)
        _freeze(model, recipe.model.freeze)
        return model
    from sentence_transformers import SentenceTransformer

    source = resolve_model_path(recipe)
    cfg = recipe.model
    try:
        if kind == "hf":
            model = _from_hf(source, cfg, device)
        else:
            model = SentenceTransformer(
                source, device=device, trust_remote_code=cfg.trust_remote_code
            )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VembedError(f"cannot load {source} for training: {first}") from None
    model.max_seq_length = cfg.max_length
    if cfg.gradient_checkpointing:
        model[0].auto_model.gradient_checkpointing_enable()
    _freeze(model, cfg.freeze)
    if recipe.lora.enabled:
        _add_lora(model, recipe.lora)
    return model


def _is_st_folder(folder: Path) -> bool:
    from vembed_bench.encoders import folders

    return folders.is_st_folder(folder)


def accepted_inputs(model: Any) -> frozenset[str]:
    """What ``model`` embeds: ``{"text"}`` for sentence-transformers, else its ``accepts``."""
    return frozenset(getattr(_unwrap(model), "accepts", ("text",)))


def eval_options(recipe: Any, *, tuned: bool) -> dict[str, Any]:
    """``load_encoder`` options scoring the base model / the saved fine-tuned folder."""
    kind = model_kind(recipe)
    if kind not in _TEXT_TYPES:
        return _backend(kind).eval_options(recipe, tuned=tuned)
    options: dict[str, Any] = {"max_length": recipe.model.max_length}
    if tuned:
        return options
    options["trust_remote_code"] = recipe.model.trust_remote_code
    source = Path(resolve_model_path(recipe))
    plain_hf = recipe.model.type == "auto" and source.is_dir() and not _is_st_folder(source)
    if recipe.model.type == "hf" or plain_hf:  # the pooling training wraps it with (_from_hf)
        options.update(model_type="hf", pooling=recipe.model.pooling or "mean")
    if recipe.data.query_prompt or recipe.data.document_prompt:
        options.update(
            query_prompt=recipe.data.query_prompt, document_prompt=recipe.data.document_prompt
        )
    return options


def _from_hf(source: str, cfg: Any, device: str) -> Any:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    transformer = Transformer(
        source,
        max_seq_length=cfg.max_length,
        model_args={"trust_remote_code": cfg.trust_remote_code},
        tokenizer_args={"trust_remote_code": cfg.trust_remote_code},
    )
    mode = {"cls": "cls", "mean": "mean", "last": "lasttoken", None: "mean"}.get(cfg.pooling)
    if mode is None:
        raise VembedError(f"model.pooling {cfg.pooling!r}: choose mean, cls or last")
    pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=mode)
    return SentenceTransformer(modules=[transformer, pooling, Normalize()], device=device)


def _freeze(model: Any, prefixes: Sequence[str]) -> None:
    if not prefixes:
        return
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise VembedError(
                f"model.freeze: no parameter starts with {prefix!r} (e.g. {', '.join(names[:3])})"
            )
    for name, param in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            param.requires_grad_(False)


def _add_lora(model: Any, cfg: Any) -> None:
    if cfg.load_in_4bit:
        raise VembedError(
            "lora.load_in_4bit (QLoRA) applies to model.type llm; for a sentence-transformers "
            "model set lora.load_in_4bit=false"
        )
    transformer = model[0]
    _set_inner(transformer, with_lora(transformer.auto_model, cfg))


def with_lora(module: Any, cfg: Any) -> Any:
    """``module`` wrapped by peft with the recipe's ``lora`` settings (``get_peft_model``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise VembedError("lora.enabled needs the 'peft' package") from None
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules) or None,
    )
    try:
        return get_peft_model(module, config)
    except ValueError as err:  # peft cannot guess target modules for this architecture
        raise VembedError(f"lora: {str(err).splitlines()[0]}; set lora.target_modules") from None


def merged_copy(module: Any, adapter_dir: Path | None = None) -> Any:
    """A CPU copy of ``module`` with any LoRA adapter merged (saved to ``adapter_dir`` first)."""
    import copy

    out = copy.deepcopy(_unwrap(module)).cpu()
    if _is_peft(out):
        if adapter_dir is not None:
            out.save_pretrained(str(adapter_dir))
        out = out.merge_and_unload()
    return out


def embed_inputs(model: Any, inputs: Sequence[Any], device: Any) -> Any:
    """Forward ``inputs`` (texts, images) through the model with gradients -> ``(n, dim)``."""
    inner = _unwrap(model)  # DDP wraps forward only; tokenize lives on the inner module
    features = (
        inner.preprocess(list(inputs)) if hasattr(inner, "preprocess") else inner.tokenize(list(inputs))
    )
    features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
    return model(features)["sentence_embedding"]


def save_model(model: Any, folder: Path, *, prompts: dict[str, str] | None = None,
               card: str | None = None) -> Path:
    """Write the fine-tuned model's folder (LoRA merged) and return it.

    ``card``: the folder's own ``README.md`` (:mod:`.model_card`), written atomically after
    the weights and replacing whatever card the saving library wrote or copied from the base.
    """
    folder = _save_weights(_unwrap(model), folder, prompts)
    if card is not None:
        from vembed_bench.train.model_card import write_model_card

        write_model_card(folder, card)
    return folder


def _save_weights(model: Any, folder: Path, prompts: dict[str, str] | None) -> Path:
    import copy

    if hasattr(model, "save_trained"):
        return Path(model.save_trained(folder, prompts=prompts))
    out = copy.deepcopy(model).cpu()
    transformer = out[0]
    if _is_peft(transformer.auto_model):
        transformer.auto_model.save_pretrained(str(folder.parent / f"{folder.name}-adapter"))
        _set_inner(transformer, transformer.auto_model.merge_and_unload())
    if prompts:
        out.prompts = {**(out.prompts or {}), **prompts}
    if hasattr(out, "_model_card_text"):
        # sentence-transformers copies the base model's card (and so its title) into the saved
        # folder unless its own Trainer ran; a fresh card keeps the fine-tuned model from being
        # named after its base (encoders/naming.py reads the card's title). The run's own card
        # (:mod:`.model_card`) then replaces the fresh one.
        out._model_card_text = None
    out.save(str(folder))
    return folder


def merge_adapter(adapter: Path, base: Path, out: Path) -> Path:
    """Fold a peft adapter saved by a run into its base model; write a plain folder at ``out``."""
    from peft import PeftModel
    from sentence_transformers import SentenceTransformer

    from vembed_bench.encoders import folders

    if not Path(base).is_dir():
        raise VembedError(f"--base {base} is not a model folder")
    if folders.is_st_folder(Path(base)):
        model = SentenceTransformer(str(base), device="cpu")
    else:
        from types import SimpleNamespace

        model = _from_hf(
            str(base),
            SimpleNamespace(max_length=512, pooling="mean", trust_remote_code=False),
            "cpu",
        )
    transformer = model[0]
    peft_model = PeftModel.from_pretrained(transformer.auto_model, str(adapter))
    _set_inner(transformer, peft_model.merge_and_unload())
    model.save(str(out))
    return Path(out)


def _set_inner(transformer: Any, inner: Any) -> None:
    """Replace the HF model inside an ST Transformer module (``auto_model`` is read-only in ST >= 5)."""
    if isinstance(getattr(type(transformer), "auto_model", None), property) and hasattr(
        transformer, "model"
    ):
        transformer.model = inner
    else:  # sentence-transformers < 5
        transformer.auto_model = inner


def _is_peft(module: Any) -> bool:
    return type(module).__module__.startswith("peft")


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)
