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

SCHEMA_VERSION = 2
"""2 added ``settings`` and ``settings_key`` (the result's identity beside model and task);
version-1 files still load, their settings rebuilt from ``limit`` and ``seed``."""
READABLE_SCHEMAS = (1, SCHEMA_VERSION)


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
    settings: dict[str, Any] = field(default_factory=dict)
    """Everything besides the weights and the data that changes the numbers (query sample,
    Matryoshka dim, index, dtype, encoder overrides); see :mod:`vembed_bench.evaluation.identity`."""
    reference: dict[str, Any] = field(default_factory=dict)
    """The task card's published scores of this model and ours against them, when one matched
    (:mod:`vembed_bench.report.references`); not part of the identity."""
    settings_key: str = ""
    """A short readable label of ``settings`` ("" for a full split with the model's defaults);
    it is part of the file name, so runs with different settings never replace each other."""
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
        if record.get("schema_version", 1) == 1:  # no settings yet: rebuild the query sample part
            limit = record.get("limit")
            record["settings"] = {"limit": limit, "seed": record.get("seed") if limit else None}
            record["settings_key"] = f"limit{limit}-seed{record.get('seed', 0)}" if limit else ""
            record["schema_version"] = SCHEMA_VERSION
        return cls(**record)

    @property
    def weights_fingerprint(self) -> str:
        """The fingerprint of the weights alone (older records: the full model fingerprint)."""
        info = self.model_info
        return str(info.get("weights_fingerprint") or info.get("fingerprint") or "nofp")

    def default_path(self, results_dir: Path) -> Path:
        """``results_dir/<model>-<weights8>/<task>/<split>[.<settings key>].json``."""
        return result_path(Path(results_dir), self.model, self.weights_fingerprint, self.task, self.split,
                           self.settings_key)

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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise VembedError(f"{path}: cannot read result file ({err})") from None
    if not isinstance(record, dict):
        raise VembedError(f"{path}: not a vembed-bench result file (a JSON {type(record).__name__})")
    if record.get("schema_version") not in READABLE_SCHEMAS:
        raise VembedError(f"{path}: unsupported result schema {record.get('schema_version')!r}")
    try:
        return Result.from_dict(record)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise VembedError(f"{path}: damaged result file ({type(err).__name__}: {err})") from None


def result_path(results_dir: Path, model: str, weights_fingerprint: str, task: str, split: str,
                settings_key: str = "") -> Path:
    """Where a result lives: one folder per (display name, weights), one file per (task, split,
    settings). Different settings of the same model and task are siblings, never the same file."""
    model_dir = f"{slug(model)}-{(weights_fingerprint or 'nofp')[:8]}"
    stem = slug(split) + (f".{slug(settings_key)}" if settings_key else "")
    return Path(results_dir) / model_dir / slug(task) / f"{stem}.json"


def slug(text: str) -> str:
    """A filesystem-safe name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "unnamed"
