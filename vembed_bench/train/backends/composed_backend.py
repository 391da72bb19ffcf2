"""Training a composed image-text model (``model.type: composed``): projections, optionally towers.

A composed folder (:mod:`vembed_bench.encoders.composed`) is a text tower, an
image tower and two linear projections into one shared space. The trainable
module does exactly the eval encoder's math -- each tower's unit-norm output,
times its projection (``nn.Linear(bias=False)`` initialised from
``projections.safetensors``), normalised again -- so the zero-shot score, the
training objective and the fine-tuned score all measure the same function.

Towers: a tower named in ``model.freeze`` as a whole (``model.freeze: [text,
image]``; the module's parameters are ``text.*``, ``image.*`` and
``projections.{text,image}.weight``) is embedded by the *eval* encoder of its
folder (``load_encoder``, eval mode, no gradients) and its outputs are
**memoised per input for the whole run**: each caption and each image is
encoded once, on first sight, and every later step (every epoch) only runs the
projections. With frozen towers that is the whole cost of a step after the first
epoch, which is what makes projection-head training fast on a CPU. The memo
grows with the number of distinct inputs (one vector each).

A tower not frozen as a whole trains with gradients: a sentence-transformers
text tower as a ``SentenceTransformer`` (parameters ``text.0.auto_model...``), a
timm image tower with :class:`~vembed_bench.train.backends.timm_backend.TimmTrainable`
(``image.model...``); a prefix like ``text.0.auto_model.embeddings`` in
``model.freeze`` freezes only that part. Other tower types must be frozen.

The base model is ``model.path`` (a composed folder), or it is built by
:func:`base_folder` from ``model.text_tower`` + ``model.image_tower`` +
``model.projection_dim`` into ``<run>/base_model`` (seeded random orthogonal
projections, :func:`~vembed_bench.encoders.composed.build_composed`), so the
zero-shot eval and training start from the same folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vembed_bench.errors import VembedError

__all__ = ["BASE_FOLDER", "base_folder", "build", "eval_options", "frozen_towers", "tower_sources"]

BASE_FOLDER = "base_model"
TOWERS = ("text", "image")


# -- the base folder --------------------------------------------------------------------------


def base_folder(recipe: Any) -> Path:
    """The composed folder training starts from (built in the run folder from the towers if
    needed)."""
    from vembed_bench.encoders.composed import is_composed_folder
    from vembed_bench.train.model import resolve_model_path

    cfg = recipe.model
    if cfg.path:
        folder = Path(resolve_model_path(recipe))
        if not is_composed_folder(folder):
            raise VembedError(f"model.path {cfg.path}: {folder} is not a composed folder (no "
                              "composed.json); or build one with model.text_tower, "
                              "model.image_tower and model.projection_dim")
        return folder
    folder = recipe.run_dir / BASE_FOLDER
    if is_composed_folder(folder):  # a resumed run, or the flow built it before the zero-shot eval
        built = json.loads((folder / "composed.json").read_text(encoding="utf-8")).get("dim")
        if built != cfg.projection_dim:
            raise VembedError(f"{folder} was built with projection_dim {built}, the recipe asks "
                              f"for {cfg.projection_dim}; start over with --overwrite")
        return folder
    sources = tower_sources(recipe)
    dims = {key: _tower_dim(_load_tower(source, key, device="cpu"), key)
            for key, source in sources.items()}
    return _build_atomically(sources, dims, cfg.projection_dim, recipe.training.seed, folder)


def tower_sources(recipe: Any) -> dict[str, Path]:
    """The folders of ``model.text_tower`` and ``model.image_tower`` (refused if missing)."""
    return {key: Path(_tower_source(recipe, key)) for key in TOWERS}


def _tower_source(recipe: Any, key: str) -> str:
    """``model.<key>_tower`` resolved like ``model.path`` (folder, ``@data_root/``, ``pip:``)."""
    from vembed_bench.train.model import resolve_model_path

    value = getattr(recipe.model, f"{key}_tower")
    probe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, path=value))
    try:
        source = resolve_model_path(probe)
    except VembedError as err:
        raise VembedError(str(err).replace("model.path", f"model.{key}_tower", 1)) from None
    if not Path(source).is_dir():
        raise VembedError(f"model.{key}_tower {value}: {source} is not a model folder")
    return source


def _build_atomically(sources: dict[str, Path], dims: dict[str, int], dim: int, seed: int,
                      folder: Path) -> Path:
    """Build into a temporary sibling, then rename: a crash never leaves half a base model."""
    from vembed_bench.encoders.composed import build_composed

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        build_composed(sources["text"], sources["image"], tmp, dim=dim, text_dim=dims["text"],
                       image_dim=dims["image"], seed=seed)
        _publish(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _publish(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary folder into place, with the modes a plain mkdir / open give
    (``mkdtemp`` makes 0700 folders and safetensors 0600 files)."""
    from vembed_bench.atomic import _default_mode

    os.chmod(tmp, _default_mode() | 0o111)
    for path in tmp.glob("*.safetensors"):
        os.chmod(path, _default_mode())
    os.replace(tmp, folder)


# -- loading the towers -----------------------------------------------------------------------


def _load_tower(folder: Path, key: str, *, device: str) -> Any:
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions

    options = EncoderOptions(show_progress=False, device=device)
    if key == "text":  # the data's prompts are already in the texts: no stored prompt on top
        return load_encoder(str(folder), options.with_(query_prompt="", document_prompt=""))
    return load_encoder(str(folder), options.with_(num_workers=0))


def _tower_dim(encoder: Any, key: str) -> int:
    dim = getattr(encoder, "dim", None)
    model = getattr(encoder, "model", None)
    for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):  # ST 5 / 4
        if not dim and hasattr(model, method):
            dim = getattr(model, method)()
    if not dim:  # ask the tower itself
        with tempfile.TemporaryDirectory() as tmp:
            dim = _encode_tower(encoder, key, [_probe_input(key, Path(tmp))]).shape[1]
    return int(dim)


def _probe_input(key: str, tmp: Path) -> Any:
    if key == "text":
        return "probe"
    from PIL import Image

    from vembed_bench.train.data import ImageInput

    Image.new("RGB", (32, 32), (127, 127, 127)).save(tmp / "probe.png")
    return ImageInput(str(tmp / "probe.png"))


def _encode_tower(encoder: Any, key: str, inputs: Sequence[Any]) -> Any:
    """The tower's unit-norm vectors ``(n, d)`` (numpy), as the composed eval encoder gets them."""
    from vembed_bench.data.types import Item

    if key == "text":
        items = [Item(str(i), text=text) for i, text in enumerate(inputs)]
    else:
        items = [Item(str(i), image=Path(x.path)) for i, x in enumerate(inputs)]
    return encoder.encode_documents(items, batch_size=32)


def frozen_towers(recipe: Any) -> set[str]:
    """The towers ``model.freeze`` names as a whole (``text`` / ``text.``, ``image`` / ``image.``):
    these are embedded by their eval encoder and memoised."""
    return {key for key in TOWERS if any(p.rstrip(".") == key for p in recipe.model.freeze)}


# -- the trainable module ---------------------------------------------------------------------


def build(recipe: Any, device: str = "cpu") -> Any:
    """The composed model of :func:`base_folder`, ready to train (see the module docstring)."""
    if recipe.lora.enabled:
        raise VembedError("lora is not supported for model.type composed; train the projections "
                          "(model.freeze: [text, image]) or a whole tower")
    return _composed_module()(base_folder(recipe), frozen=frozen_towers(recipe), device=device)


def _trainable_tower(folder: Path, key: str, device: str) -> Any:
    """A tower with gradients: sentence-transformers (text) or timm (image), embedding like eval."""
    from vembed_bench.encoders.folders import is_st_folder
    from vembed_bench.encoders.vision_detect import is_timm_folder

    if key == "text" and is_st_folder(folder):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(str(folder), device=device)
    if key == "image" and is_timm_folder(folder):
        from vembed_bench.train.backends.timm_backend import TimmTrainable

        return TimmTrainable(folder, device=device)
    kind = "sentence-transformers" if key == "text" else "timm"
    raise VembedError(f"{folder}: a trainable {key} tower must be a {kind} folder; freeze it "
                      f"(model.freeze: [{key}]) to train the projections on its outputs")


def _composed_module() -> type:
    import torch
    from torch import nn

    class ComposedTrainable(nn.Module):
        """Towers (frozen: memoised eval encoders; else trainable) + trainable projections."""

        accepts = frozenset(TOWERS)

        def __init__(self, folder: Path, *, frozen: set[str], device: str = "cpu") -> None:
            super().__init__()
            from safetensors.torch import load_file

            from vembed_bench.encoders.composed import CONFIG_FILE, PROJECTIONS_FILE

            self.base = Path(folder)
            self.config = json.loads((self.base / CONFIG_FILE).read_text(encoding="utf-8"))
            self.frozen = set(frozen)
            self.encoders: dict[str, Any] = {}
            for key in TOWERS:
                tower = self.base / self.config[key]
                if key in self.frozen:
                    self.encoders[key] = _load_tower(tower, key, device=device)
                    module = getattr(self.encoders[key], "model", None)
                    if not isinstance(module, nn.Module):
                        raise VembedError(f"{tower}: this {key} tower type has no torch module; "
                                          "use a timm / sentence-transformers / HF tower")
                    module.requires_grad_(False).eval()
                else:
                    module = _trainable_tower(tower, key, device)
                self.add_module(key, module)  # parameters `text.*` / `image.*` (model.freeze)
            weights = {}
            if self.config.get("text_projection") or self.config.get("image_projection"):
                weights = load_file(str(self.base / PROJECTIONS_FILE))
            self.projections = nn.ModuleDict()
            for key in TOWERS:
                weight = weights.get(f"{key}.weight")
                if not self.config.get(f"{key}_projection") or weight is None:
                    raise VembedError(f"{self.base}: the {key} tower has no projection to train; "
                                      "build the base with projections (model.projection_dim)")
                linear = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
                with torch.no_grad():
                    linear.weight.copy_(weight.float())
                self.projections[key] = linear
            self.memo: dict[str, dict[Any, Any]] = {key: {} for key in self.frozen}
            self.to(device)

        def train(self, mode: bool = True) -> Any:
            super().train(mode)
            for key in self.frozen:  # frozen towers embed in eval mode (no dropout), like eval does
                getattr(self, key).eval()
            return self

        def tokenize(self, inputs: Sequence[Any]) -> dict[str, Any]:
            """Per tower: memoised vectors (frozen) or the tower's own features (trainable)."""
            from vembed_bench.train.backends.inputs import split_inputs

            split = split_inputs(inputs, "a composed model (an image or a text, not both)")
            rows = {"text": split.text_rows, "image": split.image_rows}
            values = {"text": split.texts, "image": split.images}
            features: dict[str, Any] = {}
            for key in TOWERS:
                features[f"{key}_rows"] = torch.tensor(rows[key], dtype=torch.long)
                if key in self.frozen:
                    features[f"{key}_vectors"] = self._memoised(key, values[key])
                elif values[key]:
                    tower = getattr(self, key)  # sentence-transformers >= 5 renamed tokenize
                    prepare = tower.preprocess if hasattr(tower, "preprocess") else tower.tokenize
                    sub = prepare(values[key])
                    features.update({f"{key}:{name}": tensor for name, tensor in sub.items()})
            return features

        def _memoised(self, key: str, values: list[Any]) -> Any:
            """The frozen tower's vectors; inputs not seen before in this run are encoded (once)."""
            from vembed_bench.train.data import ImageInput

            memo = self.memo[key]
            ids = [v.path if isinstance(v, ImageInput) else v for v in values]
            new = list(dict.fromkeys(i for i in ids if i not in memo))
            if new:
                wanted = new if key == "text" else [ImageInput(path) for path in new]
                with torch.no_grad():
                    found = _encode_tower(self.encoders[key], key, wanted)
                    vectors = torch.from_numpy(found).float()
                memo.update(zip(new, vectors))
            if not ids:
                return torch.zeros(0, self.projections[key].in_features)
            return torch.stack([memo[i] for i in ids])

        def forward(self, features: dict[str, Any]) -> dict[str, Any]:
            parts, rows = [], []
            for key in TOWERS:
                weight = self.projections[key].weight
                if key in self.frozen:
                    vectors = features[f"{key}_vectors"]
                elif len(features[f"{key}_rows"]):
                    prefix = f"{key}:"
                    sub = {n[len(prefix):]: v for n, v in features.items() if n.startswith(prefix)}
                    out = getattr(self, key)(sub)["sentence_embedding"]
                    vectors = torch.nn.functional.normalize(out.float(), dim=-1)  # as eval gets it
                else:
                    vectors = torch.zeros(0, weight.shape[1])
                parts.append(self.projections[key](vectors.to(weight.device, weight.dtype)))
                rows.append(features[f"{key}_rows"])
            order = torch.argsort(torch.cat(rows).to(parts[0].device))
            embeddings = torch.cat(parts)[order]
            return {"sentence_embedding": torch.nn.functional.normalize(embeddings, dim=-1)}

        def save_trained(self, folder: Path, prompts: dict[str, str] | None = None) -> Path:
            """A complete composed folder: frozen towers copied from the base byte for byte, trained
            towers saved in their own format, the projections and the base's ``composed.json``.
            Prompts are not stored: the texts' prompts come from the recipe (``eval_options``)."""
            import copy

            from safetensors.torch import save_file

            from vembed_bench.encoders.composed import CONFIG_FILE, PROJECTIONS_FILE

            folder = Path(folder)
            if folder.exists():
                raise VembedError(f"{folder} already exists; save into a new folder")
            folder.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
            try:
                for key in TOWERS:
                    target = tmp / self.config[key]
                    if key in self.frozen:
                        shutil.copytree(self.base / self.config[key], target)
                    elif key == "text":
                        copy.deepcopy(self.text).cpu().save(str(target))
                    else:
                        self.image.save_trained(target)
                weights = {f"{key}.weight": self.projections[key].weight.detach().float().cpu()
                           .contiguous() for key in TOWERS}
                save_file(weights, str(tmp / PROJECTIONS_FILE))
                text = json.dumps(self.config, indent=2) + "\n"
                (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
                _publish(tmp, folder)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return folder

    return ComposedTrainable


def eval_options(recipe: Any, tuned: bool) -> dict[str, Any]:
    """The data's prompts for the text tower (``""`` switches stored prompts off, as in
    training, where the prompts are already in the texts)."""
    return {"query_prompt": recipe.data.query_prompt,
            "document_prompt": recipe.data.document_prompt}
