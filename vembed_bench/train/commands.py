"""The bodies of ``vembed-bench train`` and ``vembed-bench merge`` (``cli.py`` keeps the signatures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vembed_bench.errors import VembedError

__all__ = ["merge_command", "train_command"]


def train_command(
    recipe: Path,
    overrides: Sequence[str],
    *,
    dry_run: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> None:
    """Validate (and with ``dry_run`` stop), else run the flow and print the comparison."""
    import yaml

    from vembed_bench.train import train
    from vembed_bench.train.recipe import recipe_to_dict

    run = train(
        recipe,
        set=list(overrides),
        dry_run=dry_run,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
    )
    if dry_run:
        print(
            yaml.safe_dump(recipe_to_dict(run.recipe), sort_keys=False, allow_unicode=True), end=""
        )
        print(f"# recipe OK; the run would write to {run.folder}")
        return
    if run.comparison:
        print(run.comparison, end="")
    print(f"run folder: {run.folder}")
    print(f"fine-tuned model: {run.model_path}")


def merge_command(adapter: Path, base: Path, out: Path) -> Path:
    """Load ``base``, apply the LoRA ``adapter``, merge it and save a plain model folder at ``out``."""
    from vembed_bench.train.model import merge_adapter

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise VembedError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
    if Path(out).exists() and any(Path(out).iterdir()):
        raise VembedError(f"{out} already exists and is not empty; choose another --out")
    merged = merge_adapter(Path(adapter), Path(base), Path(out))
    print(f"merged model: {merged}")
    return merged
