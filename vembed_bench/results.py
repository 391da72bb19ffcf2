"""The result record: one JSON file per (model, task, split), with full provenance.

Everything the tool prints comes from a :class:`Result`, and a Result
round-trips through its JSON file, so every printed number can be traced to
the file and reproduced from what it records.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vembed_bench.atomic import write_json
from vembed_bench.errors import VembedError
from vembed_bench.metrics import MetricScores

SCHEMA_VERSION = 1


@dataclass
class Result:
    """Scores of one model on one task split, and how they were obtained."""

    task: str
    split: str
    model: str
    main_metric: str
    scores: dict[str, float]
    per_query: MetricScores
    k_values: list[int]
    metric_definitions: dict[str, str]
    model_info: dict[str, Any]
    task_info: dict[str, Any]
    search_info: dict[str, Any]
    embedding_dim: int
    seed: int
    limit: int | None
    timings: dict[str, float]
    environment: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    schema_version: int = SCHEMA_VERSION

    @property
    def main_score(self) -> float:
        return self.scores[self.main_metric]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["per_query"] = self.per_query.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Result":
        record = dict(record)
        record["per_query"] = MetricScores.from_dict(record["per_query"])
        return cls(**record)

    def default_path(self, results_dir: Path) -> Path:
        """``results_dir/<model>-<fingerprint8>/<task>/<split>.json``."""
        model_dir = f"{slug(self.model)}-{self.model_info.get('fingerprint', 'nofp')[:8]}"
        return Path(results_dir) / model_dir / slug(self.task) / f"{slug(self.split)}.json"

    def save(self, path: Path) -> Path:
        """Write the record atomically: the file is either complete or absent."""
        write_json(Path(path), self.to_dict())
        return Path(path)

    def to_pandas(self):
        """One row per metric: task, split, model, metric, value (``pandas`` DataFrame)."""
        import pandas as pd

        rows = [
            {"task": self.task, "split": self.split, "model": self.model, "metric": metric,
             "value": value, "main": metric == self.main_metric}
            for metric, value in self.scores.items()
        ]
        return pd.DataFrame(rows)

    def per_query_frame(self):
        """Per-query scores as a DataFrame indexed by query id (for bootstrap statistics)."""
        import pandas as pd

        return pd.DataFrame(self.per_query.per_query, index=pd.Index(self.per_query.query_ids, name="query_id"))


def load_result(path: str | Path) -> Result:
    """Read a result file written by :meth:`Result.save`."""
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise VembedError(f"{path}: cannot read result file ({err})") from None
    if record.get("schema_version") != SCHEMA_VERSION:
        raise VembedError(f"{path}: unsupported result schema {record.get('schema_version')!r}")
    return Result.from_dict(record)


def slug(text: str) -> str:
    """A filesystem-safe name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "unnamed"
