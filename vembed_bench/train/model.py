"""The trainable model: a SentenceTransformer built from a folder, with LoRA or frozen parts.

Training works on a ``SentenceTransformer`` whatever the input folder was (a
sentence-transformers folder, or a plain HF encoder wrapped with a Pooling
module), so the output is always a standard sentence-transformers folder that
loads unchanged in ``SentenceTransformer(...)``, ``AutoModel`` and
``vembed-bench eval --model``. LoRA adapters are merged before saving, so the
output needs no peft; the adapter alone is saved beside it for reference.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

__all__ = [
    "build_model",
    "embed_texts",
    "merge_adapter",
    "resolve_model_path",
    "save_model",
    "trainable_parameters",
]


def resolve_model_path(recipe: Any) -> str:
    """``model.path`` as a loadable folder or hub id; ``pip:<module>/<subdir>`` finds a package folder."""
    value = recipe.model.path
    if value.startswith("pip:"):
        module, _, sub = value[4:].partition("/")
        spec = importlib.util.find_spec(module)  # no import: the package may have heavy deps
        if spec is None or spec.origin is None:
            raise VembedError(f"model.path {value}: the package '{module}' is not installed")
        return str(Path(spec.origin).parent / sub)
    path = recipe.resolve_path(value)
    if path.exists():
        return str(path)
    from vembed_bench.encoders.loader import looks_like_hub_id

    if looks_like_hub_id(value):
        return value
    raise VembedError(f"model.path {value} does not exist (looked at {path})")


def build_model(recipe: Any, *, device: str = "cpu") -> Any:
    """Load the recipe's model as a SentenceTransformer, then apply freezing and LoRA."""
    from sentence_transformers import SentenceTransformer

    from vembed_bench.encoders import folders

    source = resolve_model_path(recipe)
    cfg = recipe.model
    folder = Path(source)
    kind = cfg.type
    if kind == "auto":
        kind = "sentence-transformers" if folder.is_dir() and folders.is_st_folder(folder) else "hf"
    try:
        if kind in ("sentence-transformers", "st"):
            model = SentenceTransformer(
                source, device=device, trust_remote_code=cfg.trust_remote_code
            )
        elif kind == "hf":
            model = _from_hf(source, cfg, device)
        else:
            raise VembedError(
                f"model.type {cfg.type!r} cannot be trained here yet; "
                "use sentence-transformers or hf"
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
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise VembedError("lora.enabled needs the 'peft' package") from None
    if cfg.load_in_4bit:
        raise VembedError(
            "lora.load_in_4bit (QLoRA) needs bitsandbytes and a GPU; "
            "it is not supported by this build yet"
        )
    config = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules) or None,
    )
    transformer = model[0]
    try:
        _set_inner(transformer, get_peft_model(transformer.auto_model, config))
    except ValueError as err:  # peft cannot guess target modules for this architecture
        raise VembedError(f"lora: {str(err).splitlines()[0]}; set lora.target_modules") from None


def trainable_parameters(model: Any) -> list[Any]:
    return [p for p in model.parameters() if p.requires_grad]


def embed_texts(model: Any, texts: Sequence[str], device: Any) -> Any:
    """Forward ``texts`` through the model (with gradients) -> ``(len(texts), dim)``."""
    features = (
        model.preprocess(list(texts))
        if hasattr(model, "preprocess")
        else model.tokenize(list(texts))
    )
    features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
    return model(features)["sentence_embedding"]


def save_model(model: Any, folder: Path, *, prompts: dict[str, str] | None = None) -> Path:
    """Write a plain sentence-transformers folder (LoRA merged) and return it."""
    import copy

    model = _unwrap(model)
    out = copy.deepcopy(model).cpu()
    transformer = out[0]
    if _is_peft(transformer.auto_model):
        transformer.auto_model.save_pretrained(str(folder.parent / f"{folder.name}-adapter"))
        _set_inner(transformer, transformer.auto_model.merge_and_unload())
    if prompts:
        out.prompts = {**(out.prompts or {}), **prompts}
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
