"""Why two results differ: their identity, provenance and the queries that moved.

``vembed-bench diff A.json B.json`` answers the question a user asks when two
numbers that should agree do not: were the settings different (query sample,
prompts, max length, dims...), the weights, the data, the library versions or
the hardware? And which queries won or lost on the main metric, by how much?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from vembed_bench.results import Result

# (label, path into the result record) of everything that can explain a difference.
_FIELDS = (
    ("task", ("task",)),
    ("split", ("split",)),
    ("model name", ("model",)),
    ("weights fingerprint", ("model_info", "weights_fingerprint")),
    ("model fingerprint (weights + settings)", ("model_info", "fingerprint")),
    ("model type", ("model_info", "type")),
    ("pooling", ("model_info", "pooling")),
    ("prompts", ("model_info", "prompts")),
    ("max length", ("model_info", "max_length")),
    ("dtype", ("model_info", "dtype")),
    ("device", ("model_info", "device")),
    ("data fingerprint", ("task_info", "data_fingerprint")),
    ("queries", ("task_info", "n_queries")),
    ("documents", ("task_info", "n_corpus")),
    ("search backend", ("search_info", "backend")),
    ("index", ("search_info", "index")),
    ("exact search", ("search_info", "exact")),
    ("main metric", ("main_metric",)),
    ("git commit", ("environment", "git", "commit")),
    ("python", ("environment", "hardware", "python")),
    ("processor", ("environment", "hardware", "processor")),
)


@dataclass
class QueryChange:
    query_id: str
    a: float
    b: float

    @property
    def delta(self) -> float:
        return self.b - self.a


@dataclass
class ResultDiff:
    """Differences between result A and result B; ``changes`` are B relative to A."""

    main_metric: str
    a_score: float | None
    b_score: float | None
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)
    wins: list[QueryChange] = field(default_factory=list)
    losses: list[QueryChange] = field(default_factory=list)
    ties: int = 0
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        return {
            "main_metric": self.main_metric, "a": self.a_score, "b": self.b_score,
            "delta": None if self.a_score is None or self.b_score is None else self.b_score - self.a_score,
            "differences": [{"what": w, "a": a, "b": b} for w, a, b in self.differences],
            "queries": {"won": len(self.wins), "lost": len(self.losses), "tied": self.ties,
                        "only_in_a": len(self.only_a), "only_in_b": len(self.only_b)},
            "top_wins": [vars(c) for c in self.wins[:top]],
            "top_losses": [vars(c) for c in self.losses[:top]],
        }


def diff_results(a: Result, b: Result) -> ResultDiff:
    """Compare two results field by field and query by query (on A's main metric)."""
    metric = a.main_metric
    diff = ResultDiff(metric, a.scores.get(metric), b.scores.get(metric))
    for label, path in _FIELDS:
        va, vb = _get(a, path), _get(b, path)
        if va != vb:
            diff.differences.append((label, va, vb))
    for name, va, vb in _settings_changes(a.settings, b.settings):
        diff.differences.append((f"setting {name}", va, vb))
    versions_a = (a.environment or {}).get("versions", {})
    versions_b = (b.environment or {}).get("versions", {})
    for package in sorted(set(versions_a) | set(versions_b)):
        if versions_a.get(package) != versions_b.get(package):
            diff.differences.append((f"version of {package}", versions_a.get(package), versions_b.get(package)))
    per_a, per_b = _per_query(a, metric), _per_query(b, metric)
    for qid in per_a.keys() & per_b.keys():
        change = QueryChange(qid, per_a[qid], per_b[qid])
        if change.delta > 1e-12:
            diff.wins.append(change)
        elif change.delta < -1e-12:
            diff.losses.append(change)
        else:
            diff.ties += 1
    diff.wins.sort(key=lambda c: (-c.delta, c.query_id))
    diff.losses.sort(key=lambda c: (c.delta, c.query_id))
    diff.only_a = sorted(per_a.keys() - per_b.keys())
    diff.only_b = sorted(per_b.keys() - per_a.keys())
    return diff


def render(diff: ResultDiff, a_name: str, b_name: str, *, top: int = 10) -> Iterator[str]:
    """The diff as plain lines for the console."""
    if diff.a_score is not None and diff.b_score is not None:
        yield (f"{diff.main_metric}: A {100 * diff.a_score:.2f}  B {100 * diff.b_score:.2f}  "
               f"(B - A {100 * (diff.b_score - diff.a_score):+.2f}, x100)")
    else:
        yield f"{diff.main_metric}: not computed in both results"
    yield f"A = {a_name}"
    yield f"B = {b_name}"
    if diff.differences:
        yield "what differs:"
        for what, va, vb in diff.differences:
            yield f"  {what}: {_short(va)} -> {_short(vb)}"
    else:
        yield "same weights, data, settings, versions and hardware"
    yield (f"queries: {len(diff.wins)} better in B, {len(diff.losses)} worse, {diff.ties} unchanged"
           + (f", {len(diff.only_a)} only in A" if diff.only_a else "")
           + (f", {len(diff.only_b)} only in B" if diff.only_b else ""))
    for title, changes in (("biggest gains", diff.wins), ("biggest losses", diff.losses)):
        if changes:
            yield f"{title} ({diff.main_metric}, x100):"
            for change in changes[:top]:
                yield f"  {change.query_id}: {100 * change.a:.2f} -> {100 * change.b:.2f} ({100 * change.delta:+.2f})"


def _get(result: Result, path: tuple[str, ...]) -> Any:
    value: Any = result
    for part in path:
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
        if value is None:
            return None
    return value


def _settings_changes(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    for key in sorted(set(a or {}) | set(b or {})):
        va, vb = (a or {}).get(key), (b or {}).get(key)
        if isinstance(va, dict) or isinstance(vb, dict):
            yield from _settings_changes(va or {}, vb or {}, f"{prefix}{key}.")
        elif va != vb:
            yield f"{prefix}{key}", va, vb


def _per_query(result: Result, metric: str) -> dict[str, float]:
    values = result.per_query.per_query.get(metric)
    if values is None:
        return {}
    return {qid: float(v) for qid, v in zip(result.per_query.query_ids, values)}


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 70 else text[:67] + "..."
