"""Plain Hugging Face encoders: ``AutoTokenizer`` + ``AutoModel`` + our pooling.

For folders that are not sentence-transformers checkpoints (or when the user
forces ``--model-type hf`` to choose the pooling). The forward loop is our own
rather than sentence-transformers' because it is faster on the same weights:

* every chunk of texts is tokenized once, in one fast-tokenizer call, without
  padding; batches are then formed by *exact token length* (longest first, so
  an out-of-memory error shows up in the first batch), which leaves almost no
  padding, and padded with numpy instead of a second tokenizer pass;
* on CPU a batch also stops at ``runtime.CPU_BATCH_TOKENS`` padded tokens, a
  bound on activation memory (smaller caps were measured slower); on GPUs no cap;
* ``torch.inference_mode`` and pooling by one batched matmul (no masked copy
  of the hidden states);
* each batch's rows are written straight into the preallocated output array
  at their original positions, so the order of the input is kept.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders import folders
from vembed_bench.encoders.pooling import POOLING_MODES, pool
from vembed_bench.encoders.runtime import (
    CPU_BATCH_TOKENS,
    library_versions,
    load_errors,
    load_failure,
    progress_bar,
    role_label,
    torch_dtype,
)
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size
from vembed_bench.encoders.text_inputs import format_items, resolve_prompts, stored_prompts
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

# Texts tokenized per call. Sorting by exact token length happens inside a
# chunk (texts are pre-sorted by characters globally), so a chunk bounds the
# memory held by token lists on million-document corpora.
_CHUNK = 4096
_FALLBACK_MAX_LENGTH = 512
_CPU_BATCH_TOKENS = CPU_BATCH_TOKENS  # padded tokens per CPU batch (see the module docstring)


class HFEncoder(TextEncoderBase):
    """A Hugging Face ``AutoModel`` with cls / mean / last-token pooling."""

    kind = "hf"
    st_folder = False
    """A plain sentence-transformers folder read at its own pooling (see ``__init__``)."""

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        """Load tokenizer and model.

        ``source`` is a local folder or a hub id; ``folder`` is where its JSON
        metadata can be read (the folder itself, or the hub snapshot), used for
        defaults and the fingerprint. ``options.max_batch_tokens`` caps padded tokens
        per batch (``None``: ``CPU_BATCH_TOKENS`` on CPU, no cap elsewhere; ``0``: no cap); it
        changes speed, and the embeddings only at float-rounding level.
        """
        self._locate(source, folder, options)
        pooling = options.pooling
        meta = self.folder
        cfg = folders.hf_config(meta) if meta is not None else None
        if pooling is None:
            pooling = (folders.st_pooling(meta) if meta is not None else None) or (
                "cls" if folders.is_bert_like(cfg) else "mean"
            )
        if pooling not in POOLING_MODES:
            raise VembedError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLING_MODES)}")
        self.pooling = pooling
        # A plain sentence-transformers folder read at its own pooling computes what the library
        # computes: it keeps that kind and fingerprint, so the folder, a SentenceTransformer object
        # loaded from it and --model-type sentence-transformers share one identity and cache.
        self.st_folder = (meta is not None and folders.is_plain_st_folder(meta)
                          and options.pooling in (None, folders.st_pooling(meta)))
        if self.st_folder:
            self.kind = "sentence-transformers"
        if meta is not None:
            extra = folders.st_extra_modules(meta)
            if extra:
                warnings.warn(
                    f"{meta}: the hf encoder ignores sentence-transformers modules {extra}; "
                    "use --model-type sentence-transformers to apply them",
                    stacklevel=2,
                )

        self._place(options)
        self.tokenizer, self.model = self._load(meta)
        self.max_length = int(options.max_length or self._default_max_length(meta))
        self.prompts = resolve_prompts(options.query_prompt, options.document_prompt, stored_prompts(meta))
        self.dim: int | None = getattr(self.model.config, "hidden_size", None)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:  # decoder tokenizers often have no pad token; masked out anyway
            pad_id = self.tokenizer.eos_token_id or 0
        self._pad_id = int(pad_id)
        self._left = getattr(self.tokenizer, "padding_side", "right") == "left"
        max_batch_tokens = options.max_batch_tokens
        if max_batch_tokens is None:
            max_batch_tokens = _CPU_BATCH_TOKENS if self.device == "cpu" else 0
        self.max_batch_tokens: int | None = max_batch_tokens or None

    # -- loading ---------------------------------------------------------------------------
    def _load(self, meta: Path | None) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoTokenizer

        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        target = self.source
        if meta is not None:
            sub = folders.transformer_folder(meta)
            if sub != meta:  # old sentence-transformers layout: 0_Transformer/
                if Path(self.source).is_dir():
                    target = str(sub)
                else:
                    kwargs["subfolder"] = sub.relative_to(meta).as_posix()
        try:
            tokenizer = AutoTokenizer.from_pretrained(target, **kwargs)
            model = AutoModel.from_pretrained(target, dtype=torch_dtype(self.dtype), **kwargs)
        except load_errors() as exc:
            raise load_failure(self.source, "a Hugging Face model", exc) from None
        model.to(self.device)
        model.eval()
        return tokenizer, model

    def _default_max_length(self, meta: Path | None) -> int:
        """sentence-transformers' saved max_seq_length, else the tokenizer's / model's limit."""
        saved = folders.st_max_seq_length(meta) if meta is not None else None
        if saved:
            return saved
        limits = []
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:
            limits.append(tok_max)
        pos = getattr(self.model.config, "max_position_embeddings", None)
        if isinstance(pos, int) and pos > 0:
            limits.append(pos)
        return min(limits) if limits else _FALLBACK_MAX_LENGTH

    # -- encoding --------------------------------------------------------------------------
    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        texts = format_items(items, self.prompts[role], encoder=f"{self.name} ({self.kind})")
        return self.encode_texts(texts, batch_size=batch_size, desc=role_label(role, items))

    def encode_texts(
        self, texts: Sequence[str], *, batch_size: int = 32, desc: str = "encoding"
    ) -> np.ndarray:
        """Encode ready-made strings (prompts already applied); rows keep the input order."""
        import torch

        check_batch_size(batch_size)
        n = len(texts)
        out: np.ndarray | None = None
        # Global pre-sort by characters (free), exact sort by tokens inside each chunk.
        order = sorted(range(n), key=lambda i: -len(texts[i]))
        with torch.inference_mode(), progress_bar(n, desc, self.show_progress) as bar:
            for start in range(0, n, _CHUNK):
                chunk = order[start : start + _CHUNK]
                enc = self.tokenizer(
                    [texts[i] for i in chunk],
                    truncation=True,
                    max_length=self.max_length,
                    padding=False,
                    return_attention_mask=False,
                )
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

    def _collate(self, enc: Any, sel: list[int], lengths: list[int]) -> dict[str, Any]:
        """Pad the selected token lists into ``(batch, longest)`` tensors with numpy."""
        import torch

        width = max(lengths[j] for j in sel)
        rows = len(sel)
        arrays = {"input_ids": np.full((rows, width), self._pad_id, dtype=np.int64)}
        mask = np.zeros((rows, width), dtype=np.int64)
        extra = [k for k in enc.keys() if k not in ("input_ids", "attention_mask")]
        for key in extra:
            arrays[key] = np.zeros((rows, width), dtype=np.int64)
        for r, j in enumerate(sel):
            k = lengths[j]
            cols = slice(width - k, width) if self._left else slice(0, k)
            arrays["input_ids"][r, cols] = enc["input_ids"][j]
            mask[r, cols] = 1
            for key in extra:
                arrays[key][r, cols] = enc[key][j]
        arrays["attention_mask"] = mask
        non_blocking = self.device.startswith("cuda")
        return {
            key: torch.from_numpy(value).to(self.device, non_blocking=non_blocking)
            for key, value in arrays.items()
        }

    def _forward(self, features: dict[str, Any]) -> np.ndarray:
        import torch

        output = self.model(**features)
        hidden = getattr(output, "last_hidden_state", None)
        if hidden is None:
            hidden = output[0]
        pooled = pool(self.pooling, hidden, features["attention_mask"])
        pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
        return pooled.cpu().numpy()

    # -- provenance ------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        settings = {**super()._settings(), "max_length": self.max_length, "dtype": self.dtype}
        if not self.st_folder:  # a sentence-transformers folder's pooling is in its files
            settings["pooling"] = self.pooling
        return settings

    def describe(self) -> dict[str, Any]:
        """Type, source, pooling, prompts, max_length, dtype, device, dim and library versions."""
        return {
            "type": self.kind,
            "name": self.name,
            "path": self.source,
            "folder": str(self.folder) if self.folder is not None else None,
            "pooling": self.pooling,
            "prompts": dict(self.prompts),
            "max_length": self.max_length,
            "dtype": self.dtype,
            "device": self.device,
            "dim": self.dim,
            "normalize": True,
            "engine": "hf",
            "max_batch_tokens": self.max_batch_tokens,
            "trust_remote_code": self.trust_remote_code,
            "versions": library_versions(),
        }


def _batches(
    by_len: list[int], lengths: list[int], batch_size: int, max_tokens: int | None
) -> Iterator[list[int]]:
    """Consecutive runs of the length-sorted indices: at most ``batch_size`` items,
    and at most ``max_tokens`` padded tokens when a budget is set (never below one item)."""
    i, n = 0, len(by_len)
    while i < n:
        size = batch_size
        if max_tokens:
            size = max(1, min(batch_size, max_tokens // max(1, lengths[by_len[i]])))
        yield by_len[i : i + size]
        i += size
