"""Writers of small image datasets in the exact layouts of the real benchmarks.

Stanford Online Products: ``Ebay_test.txt`` / ``Ebay_train.txt`` with the header
``image_id class_id super_class_id path`` and JPEGs under ``<super>_final/``.
Flickr30k: Karpathy's ``dataset_flickr30k.json`` (``images[]`` with ``filename``,
``imgid``, ``split``, ``sentids`` and ``sentences[]`` of ``tokens``/``raw``/``imgid``/
``sentid``) beside ``flickr30k-images/``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, seed: int, size: int = 24) -> Path:
    """A small random RGB image (JPEG or PNG by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    fmt = "JPEG" if path.suffix.lower() in {".jpg", ".jpeg"} else "PNG"
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_sop(root: Path, rows: list[tuple[int, int, str]], split: str = "test") -> Path:
    """``rows`` = (image_id, class_id, super_name); writes images and ``Ebay_<split>.txt``.

    Real SOP paths look like ``bicycle_final/111085122871_0.JPG``: the file name is
    the eBay listing id (one per class) and a running number.
    """
    folder = root / "Stanford_Online_Products"
    supers = sorted({s for _, _, s in rows})
    lines = ["image_id class_id super_class_id path"]
    counts: dict[int, int] = {}
    for image_id, class_id, super_name in rows:
        n = counts.get(class_id, 0)
        counts[class_id] = n + 1
        rel = f"{super_name}_final/{111085122800 + class_id}_{n}.JPG"
        write_image(folder / rel, seed=image_id)
        lines.append(f"{image_id} {class_id} {supers.index(super_name) + 1} {rel}")
    (folder / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_karpathy(root: Path, images: list[tuple[str, str, list[str]]]) -> Path:
    """``images`` = (filename, split, captions); writes the JSON and the image folder."""
    folder = root / "flickr30k"
    rows, sentid = [], 0
    for imgid, (filename, split, captions) in enumerate(images):
        write_image(folder / "flickr30k-images" / filename, seed=imgid)
        sentences = []
        for raw in captions:
            tokens = raw.lower().rstrip(".").split()
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        rows.append({
            "sentids": [s["sentid"] for s in sentences], "imgid": imgid, "sentences": sentences,
            "split": split, "filename": filename,
        })
    (folder / "dataset_flickr30k.json").write_text(json.dumps({"images": rows, "dataset": "flickr30k"}))
    return folder


class VectorEncoder:
    """An encoder stub that returns hand-chosen vectors by item id.

    It stands in for a model so that the metric conventions (self-exclusion,
    multi-caption hits, ties) can be checked against hand-computed values.
    """

    name = "vectors"

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = {k: np.asarray(v, dtype=np.float32) for k, v in vectors.items()}

    def _encode(self, items) -> np.ndarray:
        out = np.stack([self.vectors[item.id] for item in items])
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_queries(self, items, *, batch_size: int = 32) -> np.ndarray:
        return self._encode(items)

    def encode_documents(self, items, *, batch_size: int = 32) -> np.ndarray:
        return self._encode(items)

    def fingerprint(self) -> str:
        import hashlib

        text = str(sorted((k, v.tolist()) for k, v in self.vectors.items()))
        return hashlib.sha256(text.encode()).hexdigest()

    def describe(self) -> dict:
        return {"type": "stub", "name": self.name}


def angle(degrees: float) -> np.ndarray:
    rad = np.deg2rad(degrees)
    return np.array([np.cos(rad), np.sin(rad)])
