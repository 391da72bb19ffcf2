"""Typed options: how a model is loaded and run (:class:`EncoderOptions`) and how a task is
evaluated (:class:`EvalOptions`).

Both are frozen dataclasses validated once, when they are built, so a bad value
(``--limit 0``, ``--grid -3``, an unknown ``--maxsim``) is refused in one line
naming the flag before any data is read or any model is loaded, and every layer
below receives values it can trust instead of ``**kwargs``. They also know which
of their fields change the numbers: :meth:`EncoderOptions.vector_settings` keys the
embedding cache, and :func:`vembed_bench.evaluation.identity.settings_of` builds a
result's settings (and so its file name) from both.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

from vembed_bench.errors import VembedError

ATTENTION_MODES = ("causal", "bidirectional")
PADDING_SIDES = ("left", "right")
MAXSIM_MODES = ("exact", "faiss")
AUTO = "auto"
"""A batch size picked from free memory (``--batch-size auto``, ``training.gradcache_chunk: auto``)."""


class OverwriteStrategy(str, Enum):
    """What to do when a result with the same identity already exists (mteb's names).

    ``only-missing`` (default): reuse it when it was computed with identical
    settings on identical data by the same weights, else recompute; ``always``:
    recompute and replace; ``never``: keep any existing result, never recompute;
    ``only-cache``: only read existing results, fail for the missing ones.
    """

    ONLY_MISSING = "only-missing"
    ALWAYS = "always"
    NEVER = "never"
    ONLY_CACHE = "only-cache"

    @classmethod
    def parse(cls, value: "OverwriteStrategy | str") -> "OverwriteStrategy":
        try:
            return cls(value)
        except ValueError:
            raise VembedError(f"--overwrite-strategy '{value}' is not one of: "
                              f"{', '.join(s.value for s in cls)}") from None


@dataclass(frozen=True)
class EncoderOptions:
    """The options every encoder family understands, plus the family-specific ones.

    ``None`` means "the model's own default" (its stored prompts, its pooling,
    its max length; bf16 on CUDA and fp32 elsewhere). Options that only some
    families take (``attention`` for LLMs, ``processor`` for VLMs...) are
    refused for the others when the model type is known
    (:func:`vembed_bench.encoders.loader.load_encoder`).
    """

    model_type: str | None = None
    name: str | None = None
    pooling: str | None = None
    query_prompt: str | None = None
    document_prompt: str | None = None
    max_length: int | None = None
    device: str | None = None
    devices: tuple[str, ...] = ()
    """Data-parallel encoding, one worker process per device (``--device cuda:0,cuda:1``): a comma
    list given as ``device`` is split here once; ``device`` is then the first, on which the
    driver loads its copy of the model (to key the cache); ``()`` for one device."""
    dtype: str | None = None
    trust_remote_code: bool = False
    show_progress: bool = True
    # image models
    num_workers: int | None = None
    skip_bad_images: bool = False
    # text models: padded tokens per batch (None: a bound on CPU, none elsewhere; 0: no bound)
    max_batch_tokens: int | None = None
    # decoder LLMs
    attention: str | None = None
    attn_implementation: str | None = None
    padding_side: str | None = None
    instruction: str | None = None
    instruction_separator: str | None = None
    tokenizer: str | None = None
    # vision-language models
    processor: str | None = None
    image_placeholder: str | None = None

    def __post_init__(self) -> None:
        _positive("max_length", self.max_length, "--max-length")
        if self.max_batch_tokens is not None and (isinstance(self.max_batch_tokens, bool)
                                                  or not isinstance(self.max_batch_tokens, int)
                                                  or self.max_batch_tokens < 0):
            raise VembedError(f"max_batch_tokens {self.max_batch_tokens!r} must be 0 (no cap) or a "
                              "positive number of padded tokens per batch")
        if self.num_workers is not None and (not isinstance(self.num_workers, int) or self.num_workers < 0):
            raise VembedError(f"--image-workers {self.num_workers!r} must be 0 or a positive integer")
        for flag, prompt in (("--query-prompt", self.query_prompt), ("--document-prompt", self.document_prompt)):
            _template_fields(flag, prompt)
        _choice("attention", self.attention, ATTENTION_MODES, "--attention")
        _choice("padding_side", self.padding_side, PADDING_SIDES, "--padding-side")
        for name in ("model_type", "pooling", "device", "dtype"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise VembedError(f"--{name.replace('_', '-')} {value!r} must be a non-empty string")
        self._split_devices()

    def _split_devices(self) -> None:
        """``device="cuda:0,cuda:1"`` -> ``devices=("cuda:0", "cuda:1")``, ``device="cuda:0"``."""
        devices = self.devices
        if self.device is not None and "," in self.device:
            devices = tuple(part.strip() for part in self.device.split(","))
        elif isinstance(devices, str):
            devices = tuple(part.strip() for part in devices.split(","))
        devices = tuple(devices)
        if not devices:
            return
        example = "e.g. --device cuda:0,cuda:1"
        if any(not isinstance(d, str) or not d or "," in d for d in devices):
            raise VembedError(f"--device {','.join(map(str, devices))!r} has an empty entry; {example}")
        kinds = sorted({d.split(":")[0] for d in devices})
        if len(kinds) > 1:
            raise VembedError(f"--device {','.join(devices)} mixes device kinds ({', '.join(kinds)}); every "
                              f"worker must compute in the same dtype, so list devices of one kind, {example}")
        if self.device is not None and "," not in self.device and self.device != devices[0]:
            raise VembedError(f"device {self.device!r} is not the first of devices {devices}; "
                              "give one comma list as --device")
        object.__setattr__(self, "device", devices[0])
        object.__setattr__(self, "devices", devices if len(devices) > 1 else ())

    # Fields that never change a vector: where and how fast it is computed, and its label.
    RUNTIME_FIELDS = ("name", "device", "devices", "show_progress", "num_workers", "max_batch_tokens",
                      "trust_remote_code")

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, **more: Any) -> "EncoderOptions":
        """From a mapping of option names (unknown names refused in one line)."""
        merged = {**(values or {}), **more}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise VembedError(f"unknown encoder option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**merged)

    def with_(self, **changes: Any) -> "EncoderOptions":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def overrides(self) -> dict[str, Any]:
        """The fields set to something other than their default."""
        defaults = EncoderOptions()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(defaults, f.name)}

    def vector_settings(self) -> dict[str, Any]:
        """The overrides that can change an embedding (everything but runtime fields)."""
        return {k: v for k, v in self.overrides().items() if k not in self.RUNTIME_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EvalOptions:
    """How one task is evaluated: which queries, which K, which search, where results go."""

    split: str | None = None
    limit: int | None = None
    seed: int = 0
    k_values: tuple[int, ...] | None = None
    main_metric: str | None = None
    backend: str = "auto"
    index: str = "flat"
    batch_size: int | str = "auto"
    """Items per encoder call: a positive int, or ``"auto"`` (picked from free memory and halved on
    out-of-memory, :mod:`vembed_bench.encoders.batching`). Never part of a result's identity."""
    cache: str = "use"
    cache_dir: Path | None = None
    results_dir: Path | None = Path("results")
    show_progress: bool = True
    grid: int = 0
    maxsim: str = "exact"
    candidate_depth: int = 256
    dims: tuple[int, ...] | None = None
    overwrite: OverwriteStrategy = OverwriteStrategy.ONLY_MISSING
    save_predictions: bool = False
    reference_model: str | None = None
    """Compare with the task card's published scores of this model (also matched by display name)."""
    ray: str | None = None
    """Encode on a Ray cluster: ``"local"`` starts one on this machine (``--ray``), anything else is
    the address of a running one (``--ray-address HEAD:6379``, ``auto``); None: no Ray."""
    ray_workers: int | None = None
    """Ray encoding actors (``--ray-workers``); None: one per GPU of the cluster, else one per node."""

    def __post_init__(self) -> None:
        _positive("limit", self.limit, "--limit", what="a positive number of queries")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise VembedError(f"--seed {self.seed!r} must be an integer")
        object.__setattr__(self, "batch_size", parse_batch_size(self.batch_size, "--batch-size"))
        _positive("candidate_depth", self.candidate_depth, "--candidate-depth", required=True)
        if not isinstance(self.grid, int) or self.grid < 0:
            raise VembedError(f"--grid {self.grid!r} must be 0 (no grid) or a positive number of queries")
        _choice("maxsim", self.maxsim, MAXSIM_MODES, "--maxsim")
        from vembed_bench.cache import CachePolicy

        try:
            CachePolicy(self.cache)
        except ValueError:
            raise VembedError(f"--cache '{self.cache}' is not a policy; use one of: use, refresh, off") from None
        object.__setattr__(self, "overwrite", OverwriteStrategy.parse(self.overwrite))
        if self.k_values is not None:
            object.__setattr__(self, "k_values", _int_list("--k", self.k_values, "1,5,10"))
        if self.dims is not None:
            object.__setattr__(self, "dims", _int_list("--dims", self.dims, "768,512,256", keep_order=True))
        for name in ("cache_dir", "results_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))
        if not isinstance(self.backend, str) or not self.backend.strip():
            raise VembedError(f"--backend {self.backend!r} must be a backend name (auto, faiss, torch, numpy)")
        if not isinstance(self.index, str) or not self.index.strip():
            raise VembedError(f"--index {self.index!r} must be flat, hnsw, ivf or a faiss factory string")
        self._check_ray()

    def _check_ray(self) -> None:
        if self.ray is not None and (not isinstance(self.ray, str) or not self.ray.strip()
                                     or any(c.isspace() for c in self.ray)):
            raise VembedError(f"--ray-address {self.ray!r} must be a Ray address such as HEAD:6379, "
                              "ray://HEAD:10001 or auto")
        _positive("ray_workers", self.ray_workers, "--ray-workers", what="a positive number of workers")
        if self.ray_workers is not None and self.ray is None:
            raise VembedError("--ray-workers applies to Ray encoding; add --ray (a local cluster) or "
                              "--ray-address ADDRESS")
        if self.ray is not None and self.cache == "off":
            raise VembedError("--ray writes the encoded shards into the embedding cache, which --cache off "
                              "disables; use --cache use (or refresh)")

    def with_(self, **changes: Any) -> "EvalOptions":
        return replace(self, **changes)

    @classmethod
    def build(cls, values: Mapping[str, Any] | None = None, **more: Any) -> "EvalOptions":
        merged = {**(values or {}), **more}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            raise VembedError(f"unknown evaluation option {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**merged)


def split_options(values: Mapping[str, Any]) -> tuple[EvalOptions, EncoderOptions]:
    """Split one flat mapping of keyword arguments into the two typed option sets.

    This is the single place where the Python API's keyword arguments are sorted;
    a name that belongs to neither is refused in one line.
    """
    eval_names = {f.name for f in fields(EvalOptions)}
    encoder_names = {f.name for f in fields(EncoderOptions)}
    unknown = sorted(set(values) - eval_names - encoder_names)
    if unknown:
        raise VembedError(f"unknown option {unknown[0]!r}; evaluation options: {', '.join(sorted(eval_names))}; "
                          f"encoder options: {', '.join(sorted(encoder_names))}")
    eval_values = {k: v for k, v in values.items() if k in eval_names}
    encoder_values = {k: v for k, v in values.items() if k in encoder_names}
    if "show_progress" in eval_values:
        encoder_values["show_progress"] = eval_values["show_progress"]
    return EvalOptions(**eval_values), EncoderOptions(**encoder_values)


def parse_batch_size(value: Any, flag: str = "--batch-size") -> int | str:
    """A positive int, or ``"auto"`` (:mod:`vembed_bench.encoders.batching`); ``"8"`` (from a command
    line or YAML) becomes 8."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VembedError(f"{flag} {value} must be a positive integer or auto (picked from free memory)")
    return value


def _positive(name: str, value: Any, flag: str, *, required: bool = False, what: str = "a positive integer") -> None:
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VembedError(f"{flag} {value!r} must be {what}")


def _choice(name: str, value: Any, choices: Sequence[str], flag: str) -> None:
    if value is not None and value not in choices:
        raise VembedError(f"{flag} {value!r} is not one of: {', '.join(choices)}")


def _template_fields(flag: str, prompt: Any) -> None:
    """A ``{name}`` in a prompt other than ``{text}`` / ``{instruction}`` would be encoded literally:
    almost surely a typo (``{query}``, ``{Text}``) that changes every vector, so it is refused."""
    known = {"text", "instruction", "task"}  # {task}: the LLM encoders' synonym of {instruction}
    unknown = sorted(set(re.findall(r"\{(\w*)\}", prompt)) - known) if isinstance(prompt, str) else []
    if unknown:
        raise VembedError(f"{flag} {prompt!r} has an unknown field {{{unknown[0]}}}; a prompt template "
                          "fills only {text} and {instruction} (anything else is a plain prefix)")


def _int_list(flag: str, value: Any, example: str, *, keep_order: bool = False) -> tuple[int, ...]:
    """``"1,5,10"`` or ``[1, 5, 10]`` -> a tuple of positive ints (sorted unless ``keep_order``)."""
    try:
        parts = [p for p in value.split(",") if p.strip()] if isinstance(value, str) else list(value)
        numbers = [int(p) for p in parts]
        if any(isinstance(p, bool) or (isinstance(p, float) and not p.is_integer()) for p in parts):
            raise ValueError
    except (TypeError, ValueError):
        raise VembedError(f"{flag} '{value}' must be comma-separated positive integers, e.g. {example}") from None
    if not numbers or min(numbers) < 1:
        raise VembedError(f"{flag} '{value}' must be comma-separated positive integers, e.g. {example}")
    unique = list(dict.fromkeys(numbers))
    return tuple(unique if keep_order else sorted(unique))


__all__ = ["AUTO", "EncoderOptions", "EvalOptions", "OverwriteStrategy", "parse_batch_size", "split_options"]
