"""The Python entry points; the CLI is a thin layer over these."""

from __future__ import annotations

from pathlib import Path

from vembed_bench.evaluate import evaluate
from vembed_bench.results import Result, load_result


def load_results(*paths: str | Path):
    """Load result files (or folders searched recursively for ``*.json``) into one DataFrame.

    One row per (model, task, split, metric), with the model fingerprint and
    the path of the file each number came from.
    """
    import pandas as pd

    frames = []
    for path in _result_files(paths or ("results",)):
        result = load_result(path)
        frame = result.to_pandas()
        frame["fingerprint"] = result.model_info.get("fingerprint", "")
        frame["path"] = str(path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["task", "split", "model", "metric", "value", "main", "fingerprint", "path"])
    return pd.concat(frames, ignore_index=True)


def _result_files(paths) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(path.rglob("*.json")) if path.is_dir() else [path])
    return files


__all__ = ["Result", "evaluate", "load_result", "load_results"]
