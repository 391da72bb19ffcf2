"""Per-query rankings as a TREC run file, so any result can be re-scored by trec_eval or pytrec_eval.

One line per retrieved document: ``query-id Q0 doc-id rank score run-name``
(rank from 1; score as float32 printed with 9 significant digits, enough to
reproduce the order). Padding slots (fewer than k candidates) are left out.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

from vembed_bench.atomic import atomic_open


def write_trec_run(path: Path, query_ids: Sequence[str], corpus_ids: Sequence[str], found: Any, *,
                   run_name: str = "vembed-bench") -> Path:
    """Write ``found`` (top-k corpus positions and scores per query) atomically to ``path``."""
    tag = re.sub(r"\s+", "_", run_name) or "vembed-bench"
    with atomic_open(path) as handle:
        for qid, row, scores in zip(query_ids, found.indices, found.scores):
            for rank, (position, score) in enumerate(zip(row, scores), start=1):
                if position < 0:
                    break
                handle.write(f"{qid} Q0 {corpus_ids[position]} {rank} {float(score):.9g} {tag}\n")
    return path


def read_trec_run(path: Path) -> dict[str, dict[str, float]]:
    """``{query-id: {doc-id: score}}`` from a run file (the form pytrec_eval takes)."""
    run: dict[str, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        qid, _, doc_id, _, score, _ = line.split()
        run.setdefault(qid, {})[doc_id] = float(score)
    return run
