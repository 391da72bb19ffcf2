"""Training recipes: a typed schema, strict validation and layered resolution.

A recipe is resolved as *defaults < recipe YAML < ``--set key=value``*. Every
key is checked against the schema below, so a typo (``training.lrr``) or a
wrong type (``training.lr: fast``) is refused with the key's dotted name
instead of being silently ignored; a run that trained with a setting nobody
asked for is worse than one that did not start. The fully resolved recipe is
saved in the run folder so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from vembed_bench.errors import VembedError

__all__ = [
    "DataConfig",
    "EvalConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "Recipe",
    "TrainingConfig",
    "apply_overrides",
    "load_recipe",
    "parse_set",
    "recipe_from_dict",
    "recipe_to_dict",
]

SCHEDULES = ("cosine", "linear", "constant")
DATA_FORMATS = ("auto", "pairs", "embedrag", "beir", "labels", "scored", "teacher")
LOGGERS = ("tensorboard", "wandb", "none")


@dataclass
class ModelConfig:
    """What to fine-tune and how it turns inputs into one vector."""

    path: str = ""
    """Model folder, hub id, or ``pip:<module>/<subdir>`` (a folder shipped in a PyPI package)."""
    name: str | None = None
    """Display name of the base model in results (default: from the path)."""
    type: str = "auto"
    """``auto`` (detected from the folder), ``sentence-transformers``, ``hf``, ``llm``,
    ``timm``, ``vision``, ``clip``, ``composed`` or ``vlm`` (see ``train/model.py``)."""
    pooling: str | None = None
    """``hf``: mean, cls, last; ``llm``: eos, last, mean, weighted_mean, skip_instruction;
    ``vision``: cls, mean, pooler; ``timm``: timm's global pool (avg, max, ...)."""
    max_length: int = 128
    bidirectional: bool = False
    """Turn a decoder's causal mask off (LLM-to-embedding)."""
    trust_remote_code: bool = False
    freeze: list[str] = field(default_factory=list)
    """Parameter-name prefixes to keep frozen (e.g. ``0.auto_model.embeddings``)."""
    gradient_checkpointing: bool = False
    processor: str | None = None
    """VLMs: the processor folder, when it is not inside the model folder."""
    text_tower: str = ""
    """``type: composed`` without ``path``: the text model folder the base composed model is built from."""
    image_tower: str = ""
    """``type: composed`` without ``path``: the image model folder (e.g. a timm folder)."""
    projection_dim: int | None = None
    """``type: composed`` without ``path``: the shared dimension of the (seeded random) projections."""


@dataclass
class DataConfig:
    """Where the training pairs come from."""

    train: str = ""
    """A JSONL/CSV/Parquet file, a BEIR folder, a task card name, or ``hf:<dataset name>``."""
    format: str = "auto"
    split: str = "train"
    """The qrels split of a BEIR folder / task card, or the split of a HF dataset."""
    columns: dict[str, str] = field(default_factory=dict)
    """Our field -> the file's column, e.g. ``{query: question, positive: answer}``."""
    negatives_per_query: int = 1
    """Hard negatives used per example (0: in-batch negatives only)."""
    limit: int | None = None
    query_prompt: str = ""
    document_prompt: str = ""
    image_root: str | None = None
    """Folder image paths in the data are relative to (default: the data file's folder)."""


@dataclass
class LossConfig:
    """The loss and its wrappers."""

    name: str = "infonce"
    temperature: float = 0.05
    learnable_temperature: bool = False
    symmetric: bool = False
    margin: float = 0.2
    """Triplet margin."""
    matryoshka_dims: list[int] = field(default_factory=list)
    """Also train the leading ``d`` dimensions for each ``d`` (Matryoshka)."""
    matryoshka_weights: list[float] = field(default_factory=list)
    spread_out_weight: float = 0.0
    """Weight of the spread-out (global orthogonal) regulariser; 0 turns it off."""


@dataclass
class LoraConfig:
    """Parameter-efficient fine-tuning with peft; off means full fine-tuning."""

    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=list)
    """Empty: peft's default for the architecture."""
    load_in_4bit: bool = False
    """QLoRA (needs bitsandbytes and a GPU)."""


@dataclass
class TrainingConfig:
    """Optimisation, schedule, checkpoints and logging."""

    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 32
    gradcache_chunk: int | str | None = None
    """Encode the batch in chunks of this size with GradCache (memory ~ chunk, not batch); ``auto``:
    picked from free memory and halved on GPU out-of-memory (:mod:`vembed_bench.encoders.batching`),
    the size used written to each train-log row as ``gradcache_chunk``."""
    gather_across_devices: bool = True
    """With several processes, use every device's embeddings as negatives."""
    find_unused_parameters: bool = True
    """DDP: tolerate parameters the loss never reaches (an unused pooler, a frozen tower's
    head), as the HF Trainer does by default; False saves a graph walk per step."""
    lr: float = 2e-5
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_ratio: float = 0.1
    max_grad_norm: float | None = 1.0
    seed: int = 0
    bf16: bool = True
    """bf16 autocast on GPU (ignored on CPU)."""
    save_every: int = 0
    """Checkpoint every N steps (0: at the end of each epoch)."""
    keep_checkpoints: int = 2
    log_every: int = 1
    logger: str = "tensorboard"
    wandb_project: str | None = None


@dataclass
class EvalConfig:
    """Which tasks the zero-shot and fine-tuned models are scored on."""

    tasks: list[str] = field(default_factory=list)
    guard_tasks: list[str] = field(default_factory=list)
    """Tasks the run does not train for, scored zero-shot and fine-tuned like ``tasks``: a
    drop whose 95% paired bootstrap interval excludes 0 is reported as forgetting."""
    split: str | None = None
    limit: int | None = None
    batch_size: int = 64
    cache_dir: str | None = None
    matryoshka_dims: list[int] = field(default_factory=list)
    """Also score truncated embeddings; default: the loss's Matryoshka dims."""


@dataclass
class Recipe:
    """One training run: model, data, loss, adapter, optimisation and evaluation."""

    name: str = ""
    description: str = ""
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    base_dir: str = field(default=".", metadata={"internal": True})
    """Folder relative data paths are resolved against (the recipe file's folder)."""
    source: str = field(default="recipe", metadata={"internal": True})
    """Where the recipe came from (its file), for error messages."""

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def resolve_path(self, value: str, key: str = "path") -> Path:
        """A path from the recipe key ``key``: absolute, ``@data_root/...`` (under
        ``--data-root`` / ``$VEMBED_DATA_ROOT``, where prepared benchmark data lives, and
        never outside it), else relative to the recipe's folder (:mod:`.paths`)."""
        from vembed_bench.train.paths import resolve_path

        return resolve_path(self, value, key)


# -- conversion ----------------------------------------------------------------------------


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as plain data (what is written to ``config.yaml``)."""
    data = dataclasses.asdict(recipe)
    for internal in (f.name for f in dataclasses.fields(Recipe) if f.metadata.get("internal")):
        data.pop(internal, None)
    return data


def recipe_from_dict(
    data: Mapping[str, Any], *, source: str = "recipe", base_dir: str | Path = "."
) -> Recipe:
    """Validate ``data`` against the schema (over the defaults) and build a :class:`Recipe`."""
    if not isinstance(data, Mapping):
        raise VembedError(f"{source}: a recipe is a mapping of sections, got {type(data).__name__}")
    recipe = _build(Recipe, data, prefix="", source=source)
    recipe.base_dir, recipe.source = str(base_dir), source
    _check_values(recipe, source)
    return recipe


def load_recipe(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> Recipe:
    """Read a recipe YAML, apply ``--set`` style overrides, validate and return it."""
    import yaml

    from vembed_bench.data.files import read_text

    path = Path(path)
    if not path.is_file():
        raise VembedError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(read_text(path)) or {}  # invalid UTF-8: file, line and byte offset
    except yaml.YAMLError as err:
        raise VembedError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise VembedError(f"{path}: a recipe is a mapping of sections")
    data = apply_overrides(data, overrides, source=str(path))
    data.setdefault("name", path.stem)
    return recipe_from_dict(data, source=str(path), base_dir=path.parent)


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``["training.lr=1e-4", "lora.enabled=true"]`` -> dotted key -> YAML-parsed value."""
    import yaml

    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise VembedError(f"--set '{item}' must look like key.subkey=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parsed[key.strip()] = value
    return parsed


def apply_overrides(
    data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any], *, source: str = "recipe"
) -> dict[str, Any]:
    """Return a deep copy of ``data`` with dotted-key overrides applied (validated later)."""
    import copy

    result = copy.deepcopy(dict(data))
    flat = parse_set(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    for dotted, value in flat.items():
        parts = dotted.replace("__", ".").split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise VembedError(f"{source}: cannot set '{dotted}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return result


# -- validation ----------------------------------------------------------------------------


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise VembedError(
            f"{source}: unknown key '{key}' (known in this section: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, value in data.items():
        values[name] = _coerce(value, hints[name], f"{prefix}{name}", source)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key, source)
        for choice in inner:  # the first type the value fits (int before str)
            try:
                return _coerce(value, choice, key, source)
            except VembedError:
                continue
        names = " or ".join(_type_name(choice) for choice in inner)
        raise VembedError(f"{source}: '{key}' must be {names}, got {_show(value)}")
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise VembedError(f"{source}: '{key}' must be a section (mapping), got {_show(value)}")
        return _build(hint, value, prefix=f"{key}.", source=source)
    if origin is list:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # `--set eval.tasks=python_faq` means a one-item list
        if not isinstance(value, list):
            raise VembedError(f"{source}: '{key}' must be a list, got {_show(value)}")
        return [_coerce(v, args[0], f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise VembedError(f"{source}: '{key}' must be a mapping, got {_show(value)}")
        return {str(k): _coerce(v, args[1], f"{key}.{k}", source) for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - schema uses only the types above
        raise TypeError(f"unsupported schema type {hint!r} for {key}")
    raise VembedError(f"{source}: '{key}' must be {_type_name(hint)}, got {_show(value)}")


def _type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[hint]


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def _loss_names() -> list[str]:
    """The registered losses (:data:`vembed_bench.train.losses.LOSSES`)."""
    from vembed_bench.train.losses import LOSSES

    return LOSSES.names()


def _check_values(recipe: Recipe, source: str) -> None:
    def refuse(key: str, message: str) -> None:
        raise VembedError(f"{source}: '{key}' {message}")

    if not recipe.name or "/" in recipe.name or recipe.name in (".", ".."):
        refuse("name", "must be a non-empty folder name without '/'")
    choices = {
        "loss.name": (recipe.loss.name, _loss_names()),
        "training.schedule": (recipe.training.schedule, SCHEDULES),
        "data.format": (recipe.data.format, DATA_FORMATS),
        "training.logger": (recipe.training.logger, LOGGERS),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            refuse(key, f"is {value!r}; choose one of: {', '.join(allowed)}")
    positive = {
        "training.batch_size": recipe.training.batch_size,
        "training.epochs": recipe.training.epochs,
        "model.max_length": recipe.model.max_length,
        "eval.batch_size": recipe.eval.batch_size,
        "lora.r": recipe.lora.r,
        "training.log_every": recipe.training.log_every,
    }
    for key, value in positive.items():
        if value < 1:
            refuse(key, f"must be >= 1, got {value}")
    chunk = recipe.training.gradcache_chunk
    if isinstance(chunk, str):
        from vembed_bench.options import parse_batch_size

        try:
            recipe.training.gradcache_chunk = parse_batch_size(chunk, "training.gradcache_chunk")
        except VembedError:
            refuse("training.gradcache_chunk", f"must be >= 1 or auto when set, got {chunk!r}")
    for key, value in {
        "training.max_steps": recipe.training.max_steps,
        "training.gradcache_chunk": None if recipe.training.gradcache_chunk == "auto"
        else recipe.training.gradcache_chunk,
        "data.limit": recipe.data.limit,
        "eval.limit": recipe.eval.limit,
    }.items():
        if value is not None and value < 1:
            refuse(key, f"must be >= 1 when set, got {value}")
    if recipe.training.lr <= 0:
        refuse("training.lr", f"must be > 0, got {recipe.training.lr}")
    if not 0 <= recipe.training.warmup_ratio < 1:
        refuse("training.warmup_ratio", f"must be in [0, 1), got {recipe.training.warmup_ratio}")
    if recipe.loss.temperature <= 0:
        refuse("loss.temperature", f"must be > 0, got {recipe.loss.temperature}")
    if recipe.data.negatives_per_query < 0:
        refuse("data.negatives_per_query", "must be >= 0")
    _check_guard_tasks(recipe.eval, refuse)
    if any(d < 1 for d in recipe.loss.matryoshka_dims + recipe.eval.matryoshka_dims):
        refuse("loss.matryoshka_dims", "must be positive dimensions")
    weights = recipe.loss.matryoshka_weights
    if weights and len(weights) != len(recipe.loss.matryoshka_dims):
        refuse(
            "loss.matryoshka_weights",
            f"has {len(weights)} weights for {len(recipe.loss.matryoshka_dims)} dims",
        )
    _check_towers(recipe.model, refuse)
    if not recipe.model.path and not recipe.model.text_tower:
        refuse("model.path", "is required (a model folder, hub id or pip:<module>/<subdir>; for "
               "model.type composed: or model.text_tower + model.image_tower + model.projection_dim)")
    if not recipe.data.train:
        refuse("data.train", "is required (a data file, BEIR folder, task name or hf:<name>)")


def _check_guard_tasks(cfg: EvalConfig, refuse: Any) -> None:
    """Each guard task is named once and is not also an eval task."""
    seen: set[str] = set()
    for index, task in enumerate(cfg.guard_tasks):
        key = f"eval.guard_tasks[{index}]"
        if not task.strip():
            refuse(key, "is empty; name a task card, card file or BEIR folder")
        if task in cfg.tasks:
            refuse(key, f"{task!r} is also in eval.tasks; a guard task is one the run does not "
                   "train for (keep it in one of the two lists)")
        if task in seen:
            refuse(key, f"{task!r} is listed twice")
        seen.add(task)


def _check_towers(model: ModelConfig, refuse: Any) -> None:
    """A composed base built from two towers needs all three keys, and no ``path`` beside them."""
    keys = {"model.text_tower": model.text_tower, "model.image_tower": model.image_tower,
            "model.projection_dim": model.projection_dim}
    given = [key for key, value in keys.items() if value not in ("", None)]
    if not given:
        return
    if model.type != "composed":
        refuse(given[0], f"builds a composed model; set model.type: composed (it is {model.type!r})")
    if model.path:
        refuse(given[0], "and model.path are alternatives: model.path names a ready composed folder, "
               "the tower keys build one; keep one of them")
    for key, value in keys.items():
        if value in ("", None):
            refuse(key, f"is required next to {', '.join(given)} (a composed model is built from "
                   "model.text_tower, model.image_tower and model.projection_dim)")
    if model.projection_dim is not None and model.projection_dim < 1:
        refuse("model.projection_dim", f"must be >= 1, got {model.projection_dim}")
