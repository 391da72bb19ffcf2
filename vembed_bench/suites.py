"""Suite cards: one task name that runs several member tasks and combines their scores.

A suite card has ``loader: suite`` and names its members and how to combine
them::

    name: flickr30k
    loader: suite
    params:
      tasks: [flickr30k_t2i, flickr30k_i2t]
      aggregate: rsum          # or: mean
      metrics: [hit@1, hit@5, hit@10]
    main_metric: rsum

``rsum`` is the image-text retrieval "Rsum": the sum of the listed recalls of
every member in percent (R@1/5/10 for text-to-image plus image-to-text: at
most 600). ``mean`` averages the members' main scores. The model is loaded
once and shared by the members; each member writes its usual result file,
and the suite writes ``<model dir>/<suite>/<split>.suite.json`` beside them
(not a per-task :class:`Result`, so the leaderboard reads the members).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vembed_bench.data.cards import TaskCard, resolve_card
from vembed_bench.data.loading import register_loader
from vembed_bench.data.types import TaskData
from vembed_bench.errors import VembedError
from vembed_bench.results import Result, slug

AGGREGATES = {
    "rsum": "sum over member tasks of the listed metrics, in percent (Rsum: R@1+R@5+R@10 of "
            "text-to-image plus image-to-text, at most 600)",
    "mean": "mean of the member tasks' main scores",
}


@register_loader("suite")
def _suite_is_not_one_task(card: TaskCard, split: str) -> TaskData:
    members = ", ".join(suite_members(card))
    raise VembedError(
        f"task '{card.name}' is a suite of {members}; run it with `vembed-bench eval --task "
        f"{card.name}` or vembed_bench.evaluate_suite(), not as a single task"
    )


def is_suite(card: TaskCard) -> bool:
    return card.loader == "suite"


def suite_members(card: TaskCard) -> list[str]:
    tasks = card.params.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise VembedError(f"{card.path or card.name}: a suite card needs params.tasks, a list of task names")
    return list(tasks)


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
        return first.default_path(results_dir).parent.parent / slug(self.suite) / f"{slug(self.split)}.suite.json"


def evaluate_suite(
    task: str | Path | TaskCard,
    model: Any,
    *,
    split: str | None = None,
    results_dir: str | Path | None = "results",
    show_progress: bool = True,
    **options: Any,
) -> SuiteResult:
    """Run every member of a suite card with one loaded model and combine the scores.

    ``options`` are those of :func:`vembed_bench.evaluate`; encoder options
    (``model_type``, ``pooling``, ...) are applied once, when the model loads.
    """
    from vembed_bench.atomic import write_json
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.pipeline import evaluate

    card = task if isinstance(task, TaskCard) else resolve_card(task)
    if not is_suite(card):
        raise VembedError(f"task '{card.name}' is not a suite card (loader: {card.loader})")
    members = [resolve_card(name) for name in suite_members(card)]
    aggregate = str(card.params.get("aggregate", "mean"))
    if aggregate not in AGGREGATES:
        raise VembedError(f"{card.path}: aggregate '{aggregate}' is not one of {', '.join(AGGREGATES)}")
    metrics = [str(m) for m in card.params.get("metrics", [])]
    if aggregate == "rsum" and not metrics:
        raise VembedError(f"{card.path}: aggregate 'rsum' needs params.metrics, e.g. [hit@1, hit@5, hit@10]")

    pipeline_keys = set(inspect.signature(evaluate).parameters) - {"task", "model"}
    run_options = {k: v for k, v in options.items() if k in pipeline_keys}
    encoder_options = {k: v for k, v in options.items() if k not in pipeline_keys}
    encoder = load_encoder(model, show_progress=show_progress, **encoder_options) \
        if isinstance(model, (str, Path)) else model
    if isinstance(model, (str, Path)) and "model_name" not in run_options:
        run_options["model_name"] = getattr(encoder, "name", None) or str(model)

    results: dict[str, Result] = {}
    files: dict[str, str] = {}
    for member in members:
        ks = sorted({*member.k_values, *(_k_of(m) for m in metrics)})
        result = evaluate(member, encoder, split=split, results_dir=results_dir,
                          show_progress=show_progress, **{"k_values": ks, **run_options})
        results[member.name] = result
        if results_dir is not None:
            files[member.name] = str(result.default_path(Path(results_dir)))

    scores: dict[str, float] = {}
    for name, result in results.items():
        for metric in metrics:
            scores[f"{name}/{metric}"] = result.scores[metric]
    if aggregate == "rsum":
        scores["rsum"] = 100.0 * sum(r.scores[m] for r in results.values() for m in metrics)
    else:
        scores["mean"] = sum(r.main_score for r in results.values()) / len(results)
    main = card.main_metric if card.main_metric in scores else aggregate
    suite = SuiteResult(
        suite=card.name, split=next(iter(results.values())).split,
        model=next(iter(results.values())).model, main_metric=main, scores=scores,
        aggregate=aggregate, definition=AGGREGATES[aggregate], members=results, member_files=files,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if results_dir is not None:
        write_json(suite.default_path(Path(results_dir)), suite.to_dict())
    return suite


def _k_of(metric: str) -> int:
    _, _, k = metric.partition("@")
    if not k.isdigit():
        raise VembedError(f"suite metric '{metric}' must look like name@k, e.g. hit@1")
    return int(k)


def print_suite(suite: SuiteResult, results_dir: Path | None, console: Any = None) -> None:
    """Print each member's table, then the combined score and where it was written."""
    from rich.console import Console

    from vembed_bench.report.console import print_result

    console = console or Console()
    for name, result in suite.members.items():
        console.print(f"[bold]{name}[/]")
        print_result(result, suite.member_files.get(name), console=console)
    parts = ", ".join(f"{key} {100 * value:.2f}" for key, value in suite.scores.items() if "/" in key)
    console.print(f"[bold]{suite.suite}[/] {suite.main_metric} = [bold]{suite.main_score:.2f}[/]"
                  f"{' (x100 already)' if suite.aggregate == 'rsum' else ''}  ({parts})")
    if results_dir is not None:
        console.print(f"suite file: {suite.default_path(Path(results_dir))}")
