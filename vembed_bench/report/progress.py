"""What a run says while it works: stage messages, warnings and progress bars, all on stderr.

Stage messages ("loading model ...", "encoding 89 queries", "searching ...") are
INFO records of the ``vembed_bench.run`` logger, so library users see them only
if they ask for them; the CLI shows them by default, hides them with ``-q`` and
adds every other INFO (``-v``) and DEBUG (``-vv``) record of the package. Records
go through ``tqdm.write`` while a progress bar is open, so the two never tear.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

STAGE_LOGGER = "vembed_bench.run"


class _StderrHandler(logging.Handler):
    """One line per record; through tqdm when tqdm is loaded so open bars are redrawn below it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            tqdm = sys.modules.get("tqdm.auto") or sys.modules.get("tqdm")
            write = getattr(getattr(tqdm, "tqdm", None), "write", None)
            if write is not None:
                write(message, file=sys.stderr)
            else:
                print(message, file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"error: {message}"
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message if record.name == STAGE_LOGGER else f"{record.name}: {message}"


def configure_logging(verbosity: int) -> None:
    """0: errors only; 1: warnings and stage messages; 2: all INFO of vembed_bench; 3: DEBUG."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        root.addHandler(handler)
    root.setLevel(logging.ERROR if verbosity <= 0 else logging.WARNING)
    package = logging.getLogger("vembed_bench")
    package.setLevel({0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG))
    logging.getLogger(STAGE_LOGGER).setLevel(logging.ERROR if verbosity <= 0 else logging.INFO)


def pair_bar(total: int, enabled: bool) -> Any:
    """One bar across the pairs of a sweep (shown for more than one pair)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="pairs", unit="pair", disable=not enabled or total < 2, position=0,
                leave=False, dynamic_ncols=True)
