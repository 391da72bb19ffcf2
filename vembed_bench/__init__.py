"""vembed-bench: a benchmark-and-evaluation-first harness for embedding models.

Heavy modules load on first use, so ``import vembed_bench`` (and the CLI's
``--help``) never imports torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "evaluate": "vembed_bench.api",
    "load_result": "vembed_bench.api",
    "load_results": "vembed_bench.api",
    "ResultSet": "vembed_bench.evaluation",
    "EvalOptions": "vembed_bench.options",
    "EncoderOptions": "vembed_bench.options",
    "diff_results": "vembed_bench.report.diff",
    "Result": "vembed_bench.results",
    "load_encoder": "vembed_bench.encoders",
    "search": "vembed_bench.search",
    "train": "vembed_bench.train",
    "VembedError": "vembed_bench.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vembed_bench' has no attribute {name!r}")


__all__ = sorted(_LAZY)
