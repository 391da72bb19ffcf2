"""A composed image-text encoder: any text encoder plus any image encoder, with
optional linear projection heads into one shared space, kept in one folder.

Layout::

    folder/composed.json          {"format": "vembed-composed", "version": 1,
                                   "text": "text", "image": "image", "dim": 256,
                                   "text_projection": true, "image_projection": true}
    folder/text/                  any text model folder (sentence-transformers, HF, ...)
    folder/image/                 any image model folder (timm, HF vision, CLIP, ...)
    folder/projections.safetensors  "text.weight" (dim x text_dim), "image.weight" (dim x image_dim)

Each tower encodes with its own type's loader (prompts, pooling and
preprocessing as usual), its unit-norm output is multiplied by its projection
(when it has one), and the result is normalised again. So a projection is
trained on the towers' normalised embeddings; trainers must follow the same
convention. Untrained (random) projections make zero-shot scores near chance.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.data.types import Item
from vembed_bench.encoders.image_base import ImageEncoderBase
from vembed_bench.encoders.input_keys import text_key
from vembed_bench.encoders.text_base import check_batch_size
from vembed_bench.errors import VembedError
from vembed_bench.options import EncoderOptions

CONFIG_FILE = "composed.json"
PROJECTIONS_FILE = "projections.safetensors"


def is_composed_folder(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file()


class ComposedEncoder(ImageEncoderBase):
    """Text items through the text tower, image items through the image tower."""

    kind = "composed"

    def __init__(
        self,
        source: str | Path,
        options: EncoderOptions = EncoderOptions(),
        *,
        folder: Path | None = None,
    ) -> None:
        super().__init__()
        from vembed_bench.encoders.loader import load_encoder

        self._locate(source, folder, options, need_folder=True)
        self.num_workers, self.skip_bad_images = options.num_workers, options.skip_bad_images
        path = self.folder / CONFIG_FILE
        try:
            self.config = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise VembedError(f"{path}: invalid JSON ({exc})") from None
        for key in ("text", "image"):
            sub = self.config.get(key)
            if not isinstance(sub, str) or not (self.folder / sub).is_dir():
                raise VembedError(f"{path}: '{key}' must name a sub-folder holding the {key} model")
            if Path(sub).is_absolute() or ".." in Path(sub).parts:
                raise VembedError(f"{path}: '{key}' must be a sub-folder of {self.folder}")
        # The text tower takes the text options; the image tower only where and how to run.
        text_options = options.with_(model_type=None, name=None, num_workers=None, skip_bad_images=False)
        image_options = EncoderOptions(device=options.device, dtype=options.dtype,
                                       show_progress=options.show_progress,
                                       trust_remote_code=options.trust_remote_code,
                                       num_workers=options.num_workers, skip_bad_images=options.skip_bad_images)
        self.text = load_encoder(str(self.folder / self.config["text"]), text_options)
        self.image = load_encoder(str(self.folder / self.config["image"]), image_options)
        self.image_stats = getattr(self.image, "image_stats", self.image_stats)
        self.projections = self._load_projections()
        self.device = getattr(self.image, "device", "cpu")
        self.dtype = getattr(self.image, "dtype", "float32")
        self.prompts = dict(getattr(self.text, "prompts", {}) or {})
        self.dim = self.config.get("dim")

    def _load_projections(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        wanted = [k for k in ("text", "image") if self.config.get(f"{k}_projection")]
        if not wanted:
            return out
        path = self.folder / PROJECTIONS_FILE
        if not path.is_file():
            raise VembedError(f"{self.folder}: {CONFIG_FILE} asks for projections but {PROJECTIONS_FILE} is missing")
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        for key in wanted:
            if f"{key}.weight" not in tensors:
                raise VembedError(f"{path}: no tensor '{key}.weight'")
            out[key] = tensors[f"{key}.weight"].astype(np.float32)
        return out

    def _encode(self, items: Sequence[Item], role: str, batch_size: int) -> np.ndarray:
        check_batch_size(batch_size)
        image_rows = [i for i, item in enumerate(items) if item.image is not None]
        text_rows = [i for i, item in enumerate(items) if item.image is None]
        for row in image_rows:
            if items[row].text or items[row].title:
                raise VembedError(f"item {items[row].id!r} has both an image and text, but a composed "
                                  "encoder encodes one or the other")
        parts: list[tuple[list[int], np.ndarray]] = []
        if text_rows:
            chosen = [items[r] for r in text_rows]
            method = self.text.encode_queries if role == "query" else self.text.encode_documents
            parts.append((text_rows, self._project("text", method(chosen, batch_size=batch_size))))
        if image_rows:
            vectors = self.image.encode_documents([items[r] for r in image_rows], batch_size=batch_size)
            parts.append((image_rows, self._project("image", vectors)))
        dims = {v.shape[1] for _, v in parts}
        if len(dims) > 1:
            raise VembedError(f"{self.folder}: the text and image towers give {sorted(dims)}-d vectors; "
                              "add projections to a shared dim (build_composed(..., dim=N))")
        out = np.zeros((len(items), dims.pop() if dims else (self.dim or 1)), dtype=np.float32)
        for rows, vectors in parts:
            out[rows] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def input_key(self, item: Item, role: str) -> str:
        """An image's content digest (the image tower always encodes as a document), else the
        text tower's key for the text."""
        if item.image is not None:
            return super().input_key(item, role)
        text_key_of = getattr(self.text, "input_key", None)
        if callable(text_key_of):
            return text_key_of(item, role)
        return text_key(json.dumps([item.title, item.text, item.instruction], ensure_ascii=False), role=role)

    def _project(self, tower: str, vectors: np.ndarray) -> np.ndarray:
        weight = self.projections.get(tower)
        if weight is None:
            return vectors
        if weight.shape[1] != vectors.shape[1]:
            raise VembedError(f"{self.folder / PROJECTIONS_FILE}: '{tower}.weight' expects "
                              f"{weight.shape[1]}-d input, the {tower} tower gives {vectors.shape[1]}")
        return vectors @ weight.T

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "text_tower": self.text.describe(),
                "image_tower": self.image.describe(), "composed": dict(self.config)}


def build_composed(
    text_model: str | Path,
    image_model: str | Path,
    folder: str | Path,
    *,
    dim: int | None = None,
    text_dim: int | None = None,
    image_dim: int | None = None,
    seed: int = 0,
    link: bool = False,
) -> Path:
    """Write a composed folder from two model folders, with fresh projections to ``dim``.

    ``text_dim`` / ``image_dim`` are the towers' output sizes (needed for the
    projection shapes when ``dim`` is set). The projections are random
    orthogonal-row matrices (seeded), so inner products are roughly
    preserved but the two spaces are *not* aligned until trained.
    ``link=True`` symlinks the towers instead of copying them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key, source in (("text", Path(text_model)), ("image", Path(image_model))):
        target = folder / key
        if target.exists() or target.is_symlink():
            raise VembedError(f"{target} already exists; build into an empty folder")
        if link:
            target.symlink_to(source.resolve(), target_is_directory=True)
        else:
            shutil.copytree(source, target)
    config: dict[str, Any] = {"format": "vembed-composed", "version": 1, "text": "text", "image": "image",
                              "dim": dim, "text_projection": dim is not None, "image_projection": dim is not None}
    if dim is not None:
        if not text_dim or not image_dim:
            raise VembedError("build_composed(dim=...) needs text_dim and image_dim (the towers' sizes)")
        from safetensors.numpy import save_file

        rng = np.random.default_rng(seed)
        save_file({"text.weight": _orthogonal_rows(rng, dim, text_dim),
                   "image.weight": _orthogonal_rows(rng, dim, image_dim)}, str(folder / PROJECTIONS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder


def _orthogonal_rows(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(max(rows, cols), min(rows, cols))))
    matrix = q[:, :min(rows, cols)]
    matrix = matrix if rows >= cols else matrix.T  # (rows, cols)
    return np.ascontiguousarray(matrix[:rows, :cols], dtype=np.float32)
