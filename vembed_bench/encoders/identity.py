"""Which model is this, without loading it: a display name, a weights digest and a folder.

A runner needs to know whether results and embeddings it already has were made
by the same weights before it pays for loading a model. :func:`model_identity`
answers from small files only: the model card and config (for the name, see
:mod:`.naming`) and the memoised content digest of the folder
(:func:`~vembed_bench.encoders.fingerprint.folder_digest`, one stat per file
once the digests are cached). The weights digest is the weights alone, never
the settings: two evaluations of one folder with different prompts share it,
while their fingerprints (weights + settings) differ.

A SentenceTransformer object loaded from a local folder is recognised as that
folder (:func:`source_folder`) when its weights and modules are still the
folder's, so it shares the folder's name, weights digest and embedding cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vembed_bench.encoders import folders
from vembed_bench.options import EncoderOptions

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack")


@dataclass(frozen=True)
class ModelIdentity:
    """``name``: display name; ``weights_digest``: digest of the weights alone (``None`` when it
    cannot be known without loading or downloading); ``folder``: where the files are, if local."""

    name: str
    weights_digest: str | None
    folder: Path | None


def model_identity(model: Any, options: EncoderOptions | None = None) -> ModelIdentity:
    """The identity of ``model`` (a folder, a hub id, an encoder or a model object), cheaply.

    * a local folder: its display name and :func:`folder_digest` (a PEFT adapter
      folder: the digest of the adapter and its base together);
    * a hub id: the id, and the digest of its cached snapshot once the weights
      are downloaded (``None`` before; nothing is fetched);
    * one of our encoders: its own ``name``, ``weights_digest()`` and ``folder``;
    * a SentenceTransformer object: its source folder's identity when it is
      unchanged (:func:`source_folder`), else the digest of its state dict;
    * any other object: its class name and ``None``.

    ``options.name`` (``--model-name``) replaces the name in every case.
    """
    options = options or EncoderOptions()
    if isinstance(model, (str, Path)):
        identity = _source_identity(str(model))
    else:
        identity = _object_identity(model, options)
    if options.name:
        return ModelIdentity(options.name, identity.weights_digest, identity.folder)
    return identity


def source_folder(model: Any, *, trust_remote_code: bool = False) -> Path | None:
    """The local folder a SentenceTransformer object was loaded from, if it still equals it.

    "Equal" means the same state dict (names, dtypes, shapes, bytes) and the same
    module chain (``repr``) as the folder loaded on the CPU. The folder's side
    is computed once per folder content and library version and remembered in
    the fingerprint cache; the object's state dict is hashed on every call.
    """
    folder = _loaded_from(model)
    if folder is None:
        return None
    reference = _folder_reference(folder, trust_remote_code)
    if reference is None:
        return None
    from vembed_bench.encoders.fingerprint import state_dict_digest

    if reference.get("modules") != repr(model) or reference.get("state_dict") != state_dict_digest(model):
        return None
    return folder


def adapter_weights_digest(adapter_digest: str, base_digest: str | None) -> str | None:
    """The weights of an adapter folder: the adapter's files together with its base's weights."""
    if base_digest is None:
        return None
    from vembed_bench.encoders.fingerprint import combine

    return combine("peft-adapter", adapter_digest, {"base": base_digest})


def cached_hub_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder of a hub repo already in the Hugging Face cache (no network)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, or huggingface_hub missing: unknown
        return None


def has_weights(folder: Path) -> bool:
    """Whether a weights file lies in the folder or one level below (a snapshot may hold only configs)."""
    candidates = [*folder.glob("*"), *folder.glob("*/*")]
    return any(p.suffix in WEIGHT_SUFFIXES and p.is_file() for p in candidates)


# -- internals ----------------------------------------------------------------------------
def _source_identity(text: str) -> ModelIdentity:
    from vembed_bench.encoders.naming import display_name

    path = Path(text).expanduser()
    if path.is_dir():
        return ModelIdentity(display_name(path), _folder_weights_digest(path), path)
    if not folders.looks_like_hub_id(text):
        return ModelIdentity(text, None, None)
    snapshot = cached_hub_snapshot(text)
    if snapshot is None or not has_weights(snapshot):
        return ModelIdentity(text, None, snapshot)
    return ModelIdentity(text, _folder_weights_digest(snapshot), snapshot)


def _folder_weights_digest(folder: Path) -> str | None:
    from vembed_bench.encoders import vision_detect
    from vembed_bench.encoders.fingerprint import folder_digest

    if not vision_detect.is_adapter_folder(folder):
        return folder_digest(folder)
    from vembed_bench.encoders.adapters import base_model_path

    base = base_model_path(folder)
    base_identity = _source_identity(base)
    return adapter_weights_digest(folder_digest(folder), base_identity.weights_digest)


def _object_identity(model: Any, options: EncoderOptions) -> ModelIdentity:
    from vembed_bench.encoders.wrapped import is_sentence_transformer

    if is_sentence_transformer(model):
        folder = source_folder(model, trust_remote_code=options.trust_remote_code)
        if folder is not None:
            return _source_identity(str(folder))
        from vembed_bench.encoders.fingerprint import state_dict_digest

        return ModelIdentity(type(model).__name__, state_dict_digest(model), None)
    from vembed_bench.encoders.base import Encoder

    if not isinstance(model, Encoder) or isinstance(model, type):  # wrapped: named after its class
        return ModelIdentity(type(model).__name__, None, None)
    name = model.name if isinstance(model.name, str) and model.name else type(model).__name__
    weights_digest = getattr(model, "weights_digest", None)
    folder = getattr(model, "folder", None)
    return ModelIdentity(name, weights_digest() if callable(weights_digest) else None,
                         Path(folder) if folder is not None else None)


def _loaded_from(model: Any) -> Path | None:
    """``name_or_path`` of the model's transformer, when it is a local folder."""
    candidates = [getattr(getattr(model, "transformers_model", None), "name_or_path", None)]
    try:
        candidates.append(model[0].auto_model.config._name_or_path)
    except (AttributeError, IndexError, KeyError, TypeError):
        pass
    for value in candidates:
        if isinstance(value, (str, Path)) and str(value) and Path(value).expanduser().is_dir():
            return Path(value).expanduser()
    return None


def _folder_reference(folder: Path, trust_remote_code: bool) -> dict[str, Any] | None:
    """``{"state_dict": digest, "modules": repr}`` of the folder loaded on the CPU, remembered."""
    from importlib import metadata

    from vembed_bench.encoders.fingerprint import folder_digest, remembered

    try:
        version = metadata.version("sentence-transformers")
    except metadata.PackageNotFoundError:
        return None
    key = f"sentence-transformers-reference:{folder_digest(folder)}:{version}"

    def compute() -> dict[str, Any] | None:
        from sentence_transformers import SentenceTransformer

        from vembed_bench.encoders.fingerprint import state_dict_digest

        try:
            reference = SentenceTransformer(str(folder), device="cpu", trust_remote_code=trust_remote_code)
        except Exception:  # noqa: BLE001 - a folder that does not load is simply not the source
            return None
        return {"state_dict": state_dict_digest(reference), "modules": repr(reference)}

    return remembered(key, compute)
