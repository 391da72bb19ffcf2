"""A suite's combined result: the members' results and their aggregate, written beside them.

The runner evaluates each member like any other task (one model load, the
members' own result files, reuse of identical results) and then calls
:func:`combine`, which writes ``<model dir>/<suite>/<split>[.<settings>].suite.json``.
The suite file is a summary, not a per-task result: the leaderboard reads the
members' files and recombines them with the same :func:`~vembed_bench.data.suites.combine_scores`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from vembed_bench.data.cards import TaskCard
from vembed_bench.data.suites import AGGREGATES, combine_scores, definition, summary_record
from vembed_bench.evaluation.stages import attach_reference
from vembed_bench.results import Result, slug


@dataclass
class SuiteResult:
    """Scores of one model on a suite: the combined score and each member's Result."""

    suite: str
    split: str
    model: str
    main_metric: str
    scores: dict[str, float]
    aggregate: str
    definition: str
    members: dict[str, Result] = field(default_factory=dict)
    member_files: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    """``{"name", "columns": key -> label, "scores": key -> value}`` when the card names a summary."""
    settings_key: str = ""
    reference: dict[str, Any] = field(default_factory=dict)
    """The suite card's published scores of this model against ours (no intervals at suite level)."""

    @property
    def main_score(self) -> float:
        return self.scores[self.main_metric]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record.pop("members")
        record["member_scores"] = {name: r.scores for name, r in self.members.items()}
        record["member_conventions"] = {
            name: r.task_info.get("meta", {}).get("convention", "") for name, r in self.members.items()
        }
        return record

    def default_path(self, results_dir: Path) -> Path:
        first = next(iter(self.members.values()))
        stem = slug(self.split) + (f".{self.settings_key}" if self.settings_key else "")
        return first.default_path(results_dir).parent.parent / slug(self.suite) / f"{stem}.suite.json"


def combine(card: TaskCard, members: Mapping[str, Result], member_files: Mapping[str, str],
            results_dir: Path | None, reference_model: str | None = None) -> SuiteResult:
    """The suite result of one model from its members' results; written when ``results_dir`` is set."""
    aggregate, _, _ = definition(card)
    scores = combine_scores(card, members)
    first = next(iter(members.values()))
    suite = SuiteResult(
        suite=card.name, split=first.split, model=first.model,
        main_metric=card.main_metric if card.main_metric in scores else aggregate,
        scores=scores, aggregate=aggregate, definition=AGGREGATES[aggregate], members=dict(members),
        member_files=dict(member_files), created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        summary=summary_record(card, scores), settings_key=first.settings_key,
    )
    attach_reference(suite, card, reference_model)
    if results_dir is not None:
        from vembed_bench.atomic import write_json

        write_json(suite.default_path(Path(results_dir)), suite.to_dict())
    return suite
