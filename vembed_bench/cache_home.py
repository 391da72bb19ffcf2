"""Where the tool keeps its caches: one rule, in a module that imports nothing of ours.

It lives below both the embedding cache (:mod:`vembed_bench.cache`) and the file
digest memo (:mod:`vembed_bench.filehash`), so that the data layer can use the
memo without importing the embedding cache, which imports the data layer.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$VEMBED_CACHE_DIR``, else ``$XDG_CACHE_HOME/vembed-bench``, else ``~/.cache/vembed-bench``."""
    if os.environ.get("VEMBED_CACHE_DIR"):
        return Path(os.environ["VEMBED_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "vembed-bench"
