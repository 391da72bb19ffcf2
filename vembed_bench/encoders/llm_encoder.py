"""Decoder-only LLMs as embedders (Qwen2/Qwen3, Llama, Mistral, GPT-2, any causal LM).

The model is loaded with ``AutoModel`` (the causal-LM head is dropped), inputs
are formatted with an instruction template on the query side, and one of the
LLM poolings of :mod:`.llm_pooling` turns hidden states into a vector:

* queries: ``Instruct: {instruction}\\nQuery: {text}`` by default (the E5-Mistral /
  Qwen3-Embedding layout; ``{task}`` is accepted as a synonym of
  ``{instruction}``). The instruction is the item's own, else the encoder's
  ``instruction`` option. Documents get no prompt unless one is given.
* ``skip_instruction`` pooling averages only the tokens that start at or after
  the end of the separator (``Query:`` by default), found by the tokenizer's
  character offsets, not by re-tokenizing the prefix (tokenizers merge across
  the boundary, so a prefix token count can be off by one).
* padding may be on either side (``padding_side``); positions are computed
  from the mask so absolute-position models (GPT-2) also get the same numbers.
* ``attention="bidirectional"`` switches the model to bidirectional attention
  through transformers' mask and attention interfaces (:mod:`.bidirectional`).
* a folder written by training (``vembed-bench train`` with ``model.type: llm``)
  carries ``vembed_encoder.json`` (pooling, attention, prompts, max length):
  those are the defaults, so a plain ``eval --model FOLDER`` embeds the way
  training did; options given explicitly still win.

The batching, length-sorting and numpy collation are :class:`HFEncoder`'s.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders import folders
from vembed_bench.encoders.bidirectional import check_attention, make_bidirectional
from vembed_bench.encoders.hf_encoder import _CHUNK, HFEncoder, _batches
from vembed_bench.encoders.llm_pooling import LLM_POOLING_MODES, llm_pool
from vembed_bench.encoders.input_keys import check_role, text_key
from vembed_bench.encoders.runtime import (
    CPU_BATCH_TOKENS,
    load_errors,
    load_failure,
    progress_bar,
    role_label,
    torch_dtype,
)
from vembed_bench.encoders.text_base import check_batch_size
from vembed_bench.encoders.text_inputs import (
    DOCUMENT,
    QUERY,
    format_item,
    format_items,
    resolve_prompts,
    stored_prompts,
)
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

DEFAULT_QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: {text}"
DEFAULT_INSTRUCTION = "Given a question, retrieve passages that answer the question"
DEFAULT_SEPARATOR = "Query:"
PADDING_SIDES = ("left", "right")
SETTINGS_FILE = "vembed_encoder.json"
"""Written beside a trained model: the encoder options it was trained with (the defaults)."""
SETTING_KEYS = ("pooling", "attention", "padding_side", "query_prompt", "document_prompt",
                "max_length", "instruction_separator")


class LLMEncoder(HFEncoder):
    """A causal LM with eos / last / mean / weighted_mean / skip_instruction pooling."""

    kind = "llm"

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        self._locate(source, folder, options)
        saved = read_settings(self.folder)  # a trained folder's own options: the defaults
        pooling = options.pooling or saved.get("pooling")
        attention = options.attention or saved.get("attention") or "causal"
        padding_side = options.padding_side or saved.get("padding_side") or "left"
        max_length = options.max_length or saved.get("max_length")
        query_prompt, document_prompt = options.query_prompt, options.document_prompt
        if query_prompt is None:
            query_prompt = saved.get("query_prompt")
        if document_prompt is None:
            document_prompt = saved.get("document_prompt")
        instruction_separator = options.instruction_separator
        if instruction_separator is None:
            instruction_separator = saved.get("instruction_separator", DEFAULT_SEPARATOR)
        self.pooling = pooling or "eos"
        if self.pooling not in LLM_POOLING_MODES:
            raise VembedError(
                f"unknown pooling {self.pooling!r} for an LLM; choose one of {', '.join(LLM_POOLING_MODES)}"
            )
        self.attention = check_attention(attention)
        if padding_side not in PADDING_SIDES:
            raise VembedError(f"padding_side must be left or right, got {padding_side!r}")
        self.padding_side = padding_side
        self._left = padding_side == "left"
        self.instruction = DEFAULT_INSTRUCTION if options.instruction is None else options.instruction
        self.separator = instruction_separator
        self._place(options)
        self.tokenizer_source = str(options.tokenizer) if options.tokenizer is not None else self.source
        self.tokenizer, self.model = self._load_llm(options.attn_implementation)
        if self.attention == "bidirectional":
            make_bidirectional(self.model)
        self.attn_implementation = str(getattr(self.model.config, "_attn_implementation", ""))
        self.max_length = int(max_length or self._default_max_length(self.folder))
        if self.max_length < 2:
            raise VembedError(f"max_length must be at least 2, got {max_length}")
        stored = stored_prompts(self.folder)
        if query_prompt is None and not stored.get("query"):
            query_prompt = DEFAULT_QUERY_TEMPLATE
        self.prompts = resolve_prompts(_task_alias(query_prompt), _task_alias(document_prompt), stored)
        self.dim: int | None = getattr(self.model.config, "hidden_size", None)
        eos = self.tokenizer.eos_token_id
        if self.pooling == "eos" and eos is None:
            raise VembedError(f"{self.name}: the tokenizer has no EOS token; use --pooling last")
        self._eos = int(eos) if eos is not None else None
        pad = self.tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else (eos if eos is not None else 0))
        self._forward_args = set(inspect.signature(self.model.forward).parameters)
        max_batch_tokens = options.max_batch_tokens
        if max_batch_tokens is None:  # the HF encoder's CPU default (activations stay in cache)
            max_batch_tokens = CPU_BATCH_TOKENS if self.device == "cpu" else 0
        self.max_batch_tokens = max_batch_tokens or None

    # -- loading ---------------------------------------------------------------------------
    def _load_llm(self, attn_implementation: str | None) -> tuple[Any, Any]:
        tokenizer, model = load_causal_lm(
            self.source,
            tokenizer_source=self.tokenizer_source,
            dtype=self.dtype,
            attn_implementation=attn_implementation,
            trust_remote_code=self.trust_remote_code,
        )
        if self.pooling == "skip_instruction" and not getattr(tokenizer, "is_fast", False):
            raise VembedError(f"{self.source}: skip_instruction pooling needs a fast tokenizer (offsets)")
        model.to(self.device)
        model.eval()
        return tokenizer, model

    # -- encoding --------------------------------------------------------------------------
    def _with_default_instruction(self, item: Item, role: str) -> Item:
        """The default instruction fills a query template's ``{instruction}`` slot; with a
        plain prefix (or no prompt) only the items' own instructions are used."""
        if role == QUERY and self.instruction and "{instruction}" in self.prompts[role] and not item.instruction:
            return dataclasses.replace(item, instruction=self.instruction)
        return item

    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        items = [self._with_default_instruction(item, role) for item in items]
        texts = format_items(items, self.prompts[role], encoder=f"{self.name} ({self.kind})")
        return self.encode_texts(texts, batch_size=batch_size, desc=role_label(role, items))

    def input_key(self, item: Item, role: str) -> str:
        """The exact string the model sees (prompt template and default instruction applied)."""
        item = self._with_default_instruction(item, check_role(role))
        return text_key(format_item(item, self.prompts[role]))

    def tokenize(self, texts: Sequence[str]) -> dict[str, list[list[int]]]:
        """Token ids (EOS appended for ``eos`` pooling) and, for ``skip_instruction``,
        the 0/1 embed mask of the tokens after the separator; no padding."""
        appends = self.pooling == "eos"
        skip = self.pooling == "skip_instruction"
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length - (1 if appends else 0),
            padding=False,
            return_attention_mask=False,
            return_offsets_mapping=skip,
        )
        ids = [list(row) for row in enc["input_ids"]]
        out: dict[str, list[list[int]]] = {"input_ids": ids}
        if appends:
            for row in ids:
                if not row or row[-1] != self._eos:
                    row.append(self._eos)  # type: ignore[arg-type]
        if skip:
            masks = []
            for text, offsets in zip(texts, enc["offset_mapping"]):
                at = text.find(self.separator) if self.separator else -1
                start = at + len(self.separator) if at >= 0 else 0
                masks.append([1 if (s >= start and e > s) else 0 for s, e in offsets])
            out["embed_mask"] = masks
        return out

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int = 32, desc: str = "encoding"
    ) -> np.ndarray:
        """Encode ready-made strings (prompts already applied); rows keep the input order."""
        import torch

        check_batch_size(batch_size)
        n = len(texts)
        out: np.ndarray | None = None
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        with torch.inference_mode(), progress_bar(n, desc, self.show_progress) as bar:
            for start in range(0, n, _CHUNK):
                chunk = order[start : start + _CHUNK]
                enc = self.tokenize([texts[i] for i in chunk])
                lengths = [len(ids) for ids in enc["input_ids"]]
                by_len = sorted(range(len(chunk)), key=lambda j: -lengths[j])
                for sel in _batches(by_len, lengths, batch_size, self.max_batch_tokens):
                    emb = self._forward(self._collate(enc, sel, lengths))
                    if out is None:
                        out = np.empty((n, emb.shape[1]), dtype=np.float32)
                        self.dim = int(emb.shape[1])
                    out[[chunk[j] for j in sel]] = emb
                    bar.update(len(sel))
        if out is None:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        return out

    def hidden_states(self, features: dict[str, Any]) -> Any:
        """Last hidden states for collated features (positions counted over real tokens)."""
        mask = features["attention_mask"]
        inputs = {"input_ids": features["input_ids"], "attention_mask": mask}
        if "position_ids" in self._forward_args:
            inputs["position_ids"] = (mask.cumsum(dim=1) - 1).clamp_min(0)
        output = self.model(**inputs)
        hidden = getattr(output, "last_hidden_state", None)
        return output[0] if hidden is None else hidden

    def embed(self, features: dict[str, Any]) -> Any:
        """Pooled, L2-normalised ``(batch, dim)`` tensor for collated features.

        Gradients flow when called outside ``inference_mode``: the training
        backend (:mod:`vembed_bench.train.backends.llm_backend`) embeds through
        this same method, so training and evaluation cannot drift apart.
        """
        import torch

        hidden = self.hidden_states(features)
        pooled = llm_pool(self.pooling, hidden, features["attention_mask"], features.get("embed_mask"))
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    def settings_record(self) -> dict[str, Any]:
        """What :data:`SETTINGS_FILE` stores: the options that make ``eval`` embed like this encoder."""
        return {
            "pooling": self.pooling,
            "attention": self.attention,
            "padding_side": self.padding_side,
            "query_prompt": self.prompts[QUERY],
            "document_prompt": self.prompts[DOCUMENT],
            "max_length": self.max_length,
            "instruction_separator": self.separator,
        }

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        return self.embed(features).float().cpu().numpy()

    # -- provenance ------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {
            **super()._settings(),
            "attention": self.attention,
            "instruction": self.instruction,
            "instruction_separator": self.separator,
            "tokenizer": self.tokenizer_source if self.tokenizer_source != self.source else None,
        }

    def describe(self) -> dict[str, Any]:
        """HF encoder provenance plus attention, padding side, instruction and separator."""
        return {
            **super().describe(),
            "attention": self.attention,
            "attn_implementation": self.attn_implementation,
            "padding_side": self.padding_side,
            "instruction": self.instruction,
            "instruction_separator": self.separator,
        }


def load_causal_lm(
    source: str,
    *,
    tokenizer_source: str | None = None,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    **model_kwargs: Any,
) -> tuple[Any, Any]:
    """``(tokenizer, AutoModel)`` for a decoder LLM, or a one-line :class:`VembedError`.

    Shared by the encoder and the training backend (which adds e.g. a 4-bit
    ``quantization_config`` through ``model_kwargs``). The model is not moved.
    """
    from transformers import AutoModel, AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source or source, **kwargs)
        model = AutoModel.from_pretrained(
            source,
            dtype=torch_dtype(dtype),
            attn_implementation=attn_implementation,
            **kwargs,
            **model_kwargs,
        )
    except load_errors() as exc:
        raise load_failure(source, "a causal language model", exc) from None
    return tokenizer, model


def read_settings(folder: Path | None) -> dict[str, Any]:
    """The options a trained folder's :data:`SETTINGS_FILE` records (empty without one)."""
    path = Path(folder) / SETTINGS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VembedError(f"{path}: unreadable ({exc}); fix or delete the file") from None
    if not isinstance(data, dict):
        raise VembedError(f"{path}: expected a JSON object of encoder options; fix or delete it")
    unknown = sorted(set(data) - set(SETTING_KEYS))
    if unknown:
        raise VembedError(
            f"{path}: unknown key {unknown[0]!r} (known: {', '.join(SETTING_KEYS)}); fix or delete it"
        )
    return data


def write_settings(folder: Path, settings: dict[str, Any]) -> Path:
    """Write :data:`SETTINGS_FILE` into ``folder`` atomically; return its path."""
    from vembed_bench.atomic import write_json

    unknown = sorted(set(settings) - set(SETTING_KEYS))
    if unknown:
        raise VembedError(f"encoder settings: unknown key {unknown[0]!r}")
    path = Path(folder) / SETTINGS_FILE
    write_json(path, settings)
    return path


def _task_alias(prompt: str | None) -> str | None:
    """``{task}`` (the seed's spelling) means ``{instruction}``."""
    return prompt.replace("{task}", "{instruction}") if prompt else prompt


def is_causal_lm_folder(folder: Path) -> bool:
    """Detector: a ``config.json`` of a text-only decoder (``*ForCausalLM`` / ``*LMHeadModel``,
    or a known decoder family), not a vision-language model."""
    cfg = folders.hf_config(folder)
    if not cfg or "vision_config" in cfg:
        return False
    return is_causal_lm_config(cfg)


def is_causal_lm_config(cfg: dict[str, Any]) -> bool:
    archs = [str(a) for a in cfg.get("architectures") or []]
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return True
    return str(cfg.get("model_type", "")).lower() in _DECODER_TYPES and not cfg.get("is_encoder_decoder")


_DECODER_TYPES = frozenset({
    "llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "gemma", "gemma2",
    "gemma3_text", "phi", "phi3", "gpt2", "gptj", "gpt_neox", "falcon", "opt", "bloom",
    "starcoder2", "olmo", "olmo2", "smollm3",
})
