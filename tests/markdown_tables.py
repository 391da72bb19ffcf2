"""Reading the Markdown tables the report writes, for tests that check numbers on its pages."""

from __future__ import annotations

import re


def md_table(text: str, after: str) -> list[dict[str, str]]:
    """The first Markdown table from the line that starts with ``after`` on (that line itself when
    it is the table's header), as dicts by header; escaped pipes (``\\|``) stay inside cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    table = []
    for line in lines[start if after.startswith("|") else start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break

    def split(line: str) -> list[str]:
        return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]

    header = split(table[0])
    return [dict(zip(header, split(line))) for line in table[2:]]
