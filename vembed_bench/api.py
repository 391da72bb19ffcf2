"""The Python entry points; the CLI is a thin layer over these."""

from __future__ import annotations

from pathlib import Path

from vembed_bench.evaluation import ResultSet, evaluate
from vembed_bench.results import Result, load_result


def load_results(*paths: str | Path):
    """Load result files (or folders searched recursively for ``*.json``) into one DataFrame.

    One row per (model, task, split, settings, metric), with the model
    fingerprint, the settings key and the path of the file each number came from.
    """
    import pandas as pd

    from vembed_bench.report.collect import find_result_files

    frames = []
    for found in find_result_files(*(paths or ("results",))):
        frame = found.result.to_pandas()
        frame["settings_key"] = found.result.settings_key
        frame["fingerprint"] = found.result.model_info.get("fingerprint", "")
        frame["path"] = str(found.path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["task", "split", "model", "metric", "value", "main", "settings_key",
                                     "fingerprint", "path"])
    return pd.concat(frames, ignore_index=True)


__all__ = ["Result", "ResultSet", "evaluate", "load_result", "load_results"]
