"""User-facing errors.

Every problem caused by the user's input (a bad file, an unknown id, a missing
path) is raised as a :class:`VembedError` whose message is one line naming the
file, line or id and saying what to do. The CLI prints that line and exits
non-zero without a traceback; library users can catch it.
"""

from __future__ import annotations


class VembedError(Exception):
    """An error the user can fix; ``str(err)`` is a one-line, actionable message."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def where(path: object, line: int | None = None) -> str:
    """Format a ``file:line`` location for error messages."""
    return f"{path}:{line}" if line is not None else str(path)
