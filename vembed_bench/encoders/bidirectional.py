"""Bidirectional attention for decoder LLMs, through transformers' own hooks.

LLM2Vec-style embedders let every token attend to every other token. LLM2Vec
did that by subclassing each architecture's attention classes, which broke
with every transformers release. transformers (>= 4.48, and 5.x) instead
dispatches both halves of attention through registries that anyone may extend:

* ``AttentionMaskInterface`` (``masking_utils``): the function that turns the
  2-D padding mask into the 4-D mask for one attention implementation. The
  model passes it a *mask function* (``causal_mask_function``, or a
  sliding-window variant); ours swaps that for ``bidirectional_mask_function``
  and keeps the padding part, then calls the stock mask builder.
* ``AttentionInterface`` (``modeling_utils``): the attention kernel. SDPA and
  flash attention fall back to their ``is_causal`` flag whenever the mask is
  ``None`` (no padding), which would silently make the model causal again;
  ours calls the stock kernel with ``is_causal=False``.

Both are registered under one new name per base implementation
(``vembed_bidirectional_sdpa``, ``..._eager``, ``..._flash_attention_2``...), and
the model is switched to it with ``set_attn_implementation``. Nothing in an
architecture's code is touched, so any model whose attention goes through
these interfaces (Llama, Mistral, Qwen2/3, GPT-2, Gemma and most others in
transformers 5) becomes bidirectional. Sliding-window layers become fully
bidirectional too (the window is dropped), which only matters beyond the window
length (4,096 tokens for Mistral).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from vembed_bench.errors import VembedError

PREFIX = "vembed_bidirectional_"
ATTENTION_MODES = ("causal", "bidirectional")
_BASES = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def bidirectional_name(base: str) -> str:
    """The registered implementation name for one base implementation."""
    return PREFIX + base


def register(base: str) -> str:
    """Register the mask builder and the kernel for ``base``; return the new name (idempotent)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, bidirectional_mask_function
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if base.startswith(PREFIX):
        return base
    if base not in _BASES:
        raise VembedError(
            f"bidirectional attention is not available for attn_implementation {base!r}; "
            f"use one of {', '.join(_BASES)}"
        )
    name = bidirectional_name(base)
    if name in ALL_ATTENTION_FUNCTIONS.valid_keys() and name in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
        return name
    stock_mask = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping[base]

    def mask(*args: Any, **kwargs: Any) -> Any:
        kwargs["mask_function"] = bidirectional_mask_function
        kwargs["allow_is_causal_skip"] = False  # a None mask would mean "causal" to the kernel
        return stock_mask(*args, **kwargs)

    kernel = _stock_kernel(base)

    def attention(module: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["is_causal"] = False
        return kernel(module)(module, *args, **kwargs)

    ALL_MASK_ATTENTION_FUNCTIONS.register(name, mask)
    ALL_ATTENTION_FUNCTIONS.register(name, attention)
    return name


def _stock_kernel(base: str) -> Callable[[Any], Callable[..., Any]]:
    """A function of the attention module giving the stock kernel for ``base``.

    Eager attention is not in the registry: each architecture defines its own
    ``eager_attention_forward`` next to its attention class, so it is looked up
    in the module's own file.
    """
    if base == "eager":

        def eager(module: Any) -> Callable[..., Any]:
            fn = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
            if fn is None:
                raise VembedError(
                    f"{type(module).__name__} has no eager_attention_forward; "
                    "use attn_implementation sdpa for bidirectional attention"
                )
            return fn

        return eager
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    fn = ALL_ATTENTION_FUNCTIONS._global_mapping[base]
    return lambda module: fn


def make_bidirectional(model: Any) -> Any:
    """Switch ``model`` (a ``PreTrainedModel``) to bidirectional attention in place; return it.

    The current implementation (``sdpa``, ``eager``, ``flash_attention_2``...)
    is kept, wrapped by its bidirectional twin.
    """
    current = getattr(model.config, "_attn_implementation", None) or "eager"
    name = register(current)
    model.set_attn_implementation(name)
    # Modules that cache the flag themselves (some read module.is_causal when no mask is given).
    for module in model.modules():
        if hasattr(module, "is_causal") and isinstance(module.is_causal, bool):
            module.is_causal = False
    return model


def is_bidirectional(model: Any) -> bool:
    return str(getattr(model.config, "_attn_implementation", "")).startswith(PREFIX)


def check_attention(mode: str) -> str:
    if mode not in ATTENTION_MODES:
        raise VembedError(f"unknown attention {mode!r}; choose one of {', '.join(ATTENTION_MODES)}")
    return mode
