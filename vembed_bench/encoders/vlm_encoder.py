"""Vision-language models as embedders (Qwen2-VL / Qwen2.5-VL / Qwen3-VL style; VLM2Vec layout).

An item (instruction, optional image, optional text) becomes one prompt:

    <|vision_start|><|image_pad|><|vision_end|>\\n{instruction} {text}

(the image part only when the item has an image; the instruction only when
there is one). The processor expands the image placeholder into the image's
patch tokens, ``AutoModel`` (the VLM without its LM head) runs, and the
embedding is the hidden state of the last real token, L2-normalised: the
VLM2Vec / Qwen3-VL-Embedding recipe. Queries get the encoder's
``instruction`` when they have none of their own; documents get none.

Images are opened here with a tiny helper (:func:`load_rgb`), kept local on
purpose: the project's shared image loading belongs to the image encoders.

The processor is read from the model folder, or from ``processor=DIR`` when it
lives elsewhere.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders import folders
from vembed_bench.encoders.input_keys import check_role, image_key, text_key
from vembed_bench.encoders.pooling import last_token_pool
from vembed_bench.encoders.runtime import library_versions, progress_bar, role_label, torch_dtype
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, item_text, with_instruction
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

QWEN_IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
VLM_TYPES = frozenset({"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"})
DEFAULT_INSTRUCTION = "Represent the given input for retrieval."


def is_vlm_folder(folder: Path) -> bool:
    """Detector: a ``config.json`` of a Qwen-VL family model."""
    cfg = folders.hf_config(folder)
    return bool(cfg) and str(cfg.get("model_type", "")).lower() in VLM_TYPES


def load_rgb(path: Path) -> Any:
    """Open an image as RGB (a one-line error naming the file when it cannot be read)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise VembedError(f"cannot read image {path} ({exc})") from None


class VLMEncoder(TextEncoderBase):
    """Last-token embeddings of (instruction, image, text) from a Qwen-VL-style model."""

    kind = "vlm"

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        if options.pooling not in (None, "last", "eos"):
            raise VembedError(f"the VLM encoder pools the last token; pooling {options.pooling!r} is not supported")
        if options.query_prompt or options.document_prompt:
            raise VembedError("the VLM encoder uses the VLM2Vec layout; set an instruction instead of prompts")
        self._locate(source, folder, options)
        self.instruction = DEFAULT_INSTRUCTION if options.instruction is None else options.instruction
        self.image_placeholder = options.image_placeholder if options.image_placeholder is not None else QWEN_IMAGE
        self.max_length = options.max_length
        self._place(options)
        self.prompts = {QUERY: "", DOCUMENT: ""}
        self.processor_source = str(options.processor) if options.processor is not None else self.source
        from transformers import AutoModel, AutoProcessor

        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        try:
            self.processor = AutoProcessor.from_pretrained(self.processor_source, **kwargs)
            self.model = AutoModel.from_pretrained(self.source, dtype=torch_dtype(self.dtype), **kwargs)
        except (OSError, ValueError, KeyError, ImportError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VembedError(f"cannot load {self.source} as a vision-language model: {first}") from None
        self.model.to(self.device).eval()
        self.processor.tokenizer.padding_side = "left"
        self.dim: int | None = None

    # -- inputs ----------------------------------------------------------------------------
    def prompt(self, item: Item) -> str:
        """The VLM2Vec-layout string for one item (image placeholder, instruction, text)."""
        body = with_instruction(item_text(item), item.instruction)
        return (self.image_placeholder + "\n" + body) if item.image is not None else body

    def _with_default_instruction(self, item: Item, role: str) -> Item:
        """Queries without an instruction of their own get the encoder's; documents get none."""
        if role == QUERY and self.instruction and not item.instruction:
            return dataclasses.replace(item, instruction=self.instruction)
        return item

    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        items = [self._with_default_instruction(item, role) for item in items]
        return self.encode_items(items, batch_size=batch_size, desc=role_label(role, items))

    def input_key(self, item: Item, role: str) -> str:
        """The prompt string the processor receives, and the image's content digest if any."""
        item = self._with_default_instruction(item, check_role(role))
        key = text_key(self.prompt(item))
        return key if item.image is None else image_key(item.image) + "|" + key

    def encode_items(self, items: Sequence[Item], *, batch_size: int = 8, desc: str = "encoding") -> np.ndarray:
        """Embeddings of ready items (instructions already set), in input order."""
        import torch

        check_batch_size(batch_size)
        rows: list[np.ndarray] = []
        with torch.inference_mode(), progress_bar(len(items), desc, self.show_progress) as bar:
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                inputs = {k: v.to(self.device) for k, v in self.batch_inputs(batch).items()}
                rows.append(embed_batch(self.model, inputs).cpu().numpy())
                bar.update(len(batch))
        if not rows:
            return np.zeros((0, self.dim or 0), dtype=np.float32)
        out = np.concatenate(rows).astype(np.float32)
        self.dim = int(out.shape[1])
        return out

    def batch_inputs(self, items: Sequence[Item]) -> dict[str, Any]:
        """The processor's tensors (on the CPU) for items, images expanded into patch tokens."""
        texts = [self.prompt(it) for it in items]
        images = [load_rgb(it.image) for it in items if it.image is not None]
        return dict(self.processor(text=texts, images=images or None, padding=True, return_tensors="pt"))

    # -- provenance ------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {**super()._settings(), "pooling": "last", "instruction": self.instruction,
                "image_placeholder": self.image_placeholder, "dtype": self.dtype}

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "name": self.name, "path": self.source, "pooling": "last",
                "layout": "vlm2vec", "instruction": self.instruction, "image_placeholder": self.image_placeholder,
                "dtype": self.dtype, "device": self.device, "dim": self.dim, "normalize": True,
                "trust_remote_code": self.trust_remote_code, "versions": library_versions()}


def embed_batch(model: Any, inputs: dict[str, Any]) -> Any:
    """Unit-norm last-token embeddings of one processed batch (gradients as the caller sets)."""
    import torch

    hidden = model(**inputs).last_hidden_state
    pooled = last_token_pool(hidden, inputs["attention_mask"])
    return torch.nn.functional.normalize(pooled.float(), p=2.0, dim=1)
