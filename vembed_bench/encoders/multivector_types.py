"""Which folders hold late-interaction (multi-vector) models, from their small files only.

A ColBERT-style folder has a ``colbert_linear.safetensors`` projection, or is a
PyLate (sentence-transformers ColBERT) module list; a ColPali / ColQwen2 folder
has that ``model_type`` in ``config.json``. The types themselves are entries of
:data:`vembed_bench.encoders.loader.MODEL_TYPES` with ``multi_vector=True``.
"""

from __future__ import annotations

from pathlib import Path

from vembed_bench.encoders import folders

COLVISION_MODEL_TYPES = frozenset({"colpali", "colqwen2"})


def is_colbert_folder(folder: Path) -> bool:
    """A ColBERT projection file, or a PyLate (sentence-transformers ColBERT) module list."""
    folder = Path(folder)
    if (folder / "colbert_linear.safetensors").is_file():
        return True
    modules = folder / "modules.json"
    try:
        return modules.is_file() and "pylate" in modules.read_text(encoding="utf-8").lower()
    except OSError:
        return False


def is_colvision_folder(folder: Path) -> bool:
    """``config.json`` of a ColPali / ColQwen2 retrieval model."""
    cfg = folders.hf_config(Path(folder))
    return bool(cfg) and str(cfg.get("model_type", "")).lower() in COLVISION_MODEL_TYPES
