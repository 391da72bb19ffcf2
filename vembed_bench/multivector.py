"""TEMPORARY: multi-vector model types until the encoders registry holds them (then this file goes).

Evaluating late-interaction (multi-vector) models: encode tokens, MaxSim search, score.

The same stages and the same :class:`~vembed_bench.results.Result` as
:func:`vembed_bench.pipeline.evaluate`, with two differences: each item is a
``(tokens, dim)`` matrix (from the encoder's ``encode_queries_multi`` /
``encode_documents_multi``), and the search is MaxSim
(:func:`vembed_bench.search.maxsim.maxsim_search`), either exact over the whole
corpus in blocks or FAISS candidate generation plus an exact rerank. The
result's ``search_info`` records which (``search``, ``candidate_depth``).
Token matrices go through the embedding cache as ragged entries
(:meth:`vembed_bench.cache.EmbeddingCache.get_or_compute_multi`), and a
re-run of a model folder on the same data is a manifest hit that loads no model.

``vembed-bench eval`` and :func:`vembed_bench.evaluate` send a model here when
:func:`is_multivector_model` says so: a ColBERT-style folder (a
``colbert_linear.safetensors`` projection, or a PyLate folder), a ColPali /
ColQwen2 folder, ``--model-type colbert|colvision``, or an encoder object with
``multi_vector = True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


from vembed_bench.errors import VembedError

# --model-type values that mean late interaction (the dense loader does not know them).
MULTI_VECTOR_TYPES = {"colbert": "colbert", "pylate": "colbert", "colvision": "colvision",
                      "colpali": "colvision", "colqwen2": "colvision"}


def is_colbert_folder(folder: Path) -> bool:
    """A ColBERT projection file, or a PyLate (sentence-transformers ColBERT) module list."""
    if (folder / "colbert_linear.safetensors").is_file():
        return True
    modules = folder / "modules.json"
    try:
        return modules.is_file() and "pylate" in modules.read_text(encoding="utf-8").lower()
    except OSError:
        return False


def is_multivector_model(model: Any, options: Any = None) -> bool:
    """Whether ``model`` (a folder, hub id or encoder object) is evaluated with MaxSim."""
    if not isinstance(model, (str, Path)):
        return bool(getattr(model, "multi_vector", False)) and hasattr(model, "encode_queries_multi")
    model_type = (options or {}).get("model_type")
    if model_type:
        return str(model_type).strip().lower() in MULTI_VECTOR_TYPES
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return False
    from vembed_bench.encoders.colvision import is_colvision_folder

    return is_colbert_folder(folder) or is_colvision_folder(folder)


def load_multivector_encoder(model: Any, **options: Any) -> Any:
    """The multi-vector encoder of a folder (ColBERT-style or ColPali/ColQwen2); objects pass through."""
    if not isinstance(model, (str, Path)):
        if not hasattr(model, "encode_queries_multi"):
            raise VembedError(f"{type(model).__name__} is not a multi-vector encoder "
                              "(no encode_queries_multi / encode_documents_multi)")
        return model
    model_type = options.pop("model_type", None)
    kind = MULTI_VECTOR_TYPES.get(str(model_type).strip().lower()) if model_type else None
    if model_type and kind is None:
        raise VembedError(f"model type {model_type!r} is not multi-vector; choose one of "
                          f"{', '.join(MULTI_VECTOR_TYPES)}")
    from vembed_bench.encoders.colbert import ColBERTEncoder
    from vembed_bench.encoders.colvision import ColVisionEncoder, is_colvision_folder

    if kind is None:
        kind = "colvision" if is_colvision_folder(Path(model)) else "colbert"
    cls = ColVisionEncoder if kind == "colvision" else ColBERTEncoder
    return cls(str(model), **options)
