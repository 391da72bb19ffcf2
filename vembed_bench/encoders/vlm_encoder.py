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
from vembed_bench.encoders.fingerprint import folder_digest
from vembed_bench.encoders.pooling import last_token_pool
from vembed_bench.encoders.runtime import library_versions, pick_device, progress_bar, resolve_dtype, torch_dtype
from vembed_bench.encoders.text_base import TextEncoderBase, check_batch_size, default_name
from vembed_bench.encoders.text_inputs import DOCUMENT, QUERY, item_text, with_instruction
from vembed_bench.errors import VembedError

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
        *,
        folder: str | Path | None = None,
        name: str | None = None,
        pooling: str | None = None,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        max_length: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        show_progress: bool = True,
        instruction: str | None = None,
        processor: str | Path | None = None,
        image_placeholder: str = QWEN_IMAGE,
    ) -> None:
        if pooling not in (None, "last", "eos"):
            raise VembedError(f"the VLM encoder pools the last token; pooling {pooling!r} is not supported")
        if query_prompt or document_prompt:
            raise VembedError("the VLM encoder uses the VLM2Vec layout; set an instruction instead of prompts")
        self.source = str(source)
        self.folder = Path(folder) if folder is not None else (Path(source) if Path(source).is_dir() else None)
        self.name = name or default_name(source)
        self.show_progress = show_progress
        self.trust_remote_code = trust_remote_code
        self.instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
        self.image_placeholder = image_placeholder
        self.max_length = max_length
        self.device = pick_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.prompts = {QUERY: "", DOCUMENT: ""}
        self.processor_source = str(processor) if processor is not None else self.source
        from transformers import AutoModel, AutoProcessor

        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
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

    def _encode_role(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        if role == QUERY and self.instruction:
            items = [it if it.instruction else dataclasses.replace(it, instruction=self.instruction) for it in items]
        return self.encode_items(items, batch_size=batch_size, desc=f"{self.name} {role}s")

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
    def _content_digest(self) -> str:
        if self.folder is None:
            raise VembedError(f"cannot fingerprint {self.source}: its files are not on disk")
        return folder_digest(self.folder)

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
