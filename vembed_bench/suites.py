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
most 600). ``mean`` averages the members' main scores. ``params.summary``
names a breakdown the suite defines on top (``mmeb``: Precision@1 averaged
per meta-task, in- and out-of-distribution and overall, as in the VLM2Vec
table); its averages go into the suite's scores, and the leaderboard overview
shows them instead of a plain mean (:func:`suite_columns`). The model is loaded
once and shared by the members; each member writes its usual result file,
and the suite writes ``<model dir>/<suite>/<split>.suite.json`` beside them
(not a per-task :class:`Result`, so the leaderboard reads the members).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from vembed_bench.data.cards import TaskCard, list_cards, resolve_card
from vembed_bench.data.loading import register_loader
from vembed_bench.data.types import TaskData
from vembed_bench.errors import VembedError
from vembed_bench.results import Result, slug

AGGREGATES = {
    "rsum": "sum over member tasks of the listed metrics, in percent (Rsum: R@1+R@5+R@10 of "
            "text-to-image plus image-to-text, at most 600)",
    "mean": "mean of the member tasks' main scores",
}

# params.summary -> "module:scores function:labels mapping"; the function maps member task
# name -> main score to flat averages, the labels name (and order) its keys.
SUMMARIES = {
    "mmeb": "vembed_bench.data.mmeb:summary_scores:SUMMARY_LABELS",
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
    summary: dict[str, Any] = field(default_factory=dict)
    """``{"name", "columns": key -> label, "scores": key -> value}`` when the card names a summary."""

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
    from vembed_bench.multivector import is_multivector_model, load_multivector_encoder
    from vembed_bench.pipeline import evaluate

    card = task if isinstance(task, TaskCard) else resolve_card(task)
    if not is_suite(card):
        raise VembedError(f"task '{card.name}' is not a suite card (loader: {card.loader})")
    known = {c.name: c for c in list_cards()}  # read the cards once, not once per member
    members = [known.get(name) or resolve_card(name) for name in suite_members(card)]
    aggregate, metrics, _ = _definition(card)

    pipeline_keys = set(inspect.signature(evaluate).parameters) - {"task", "model"}
    run_options = {k: v for k, v in options.items() if k in pipeline_keys}
    encoder_options = {k: v for k, v in options.items() if k not in pipeline_keys}
    if isinstance(model, (str, Path)) and is_multivector_model(model, encoder_options):
        encoder = load_multivector_encoder(model, show_progress=show_progress, **encoder_options)
    elif isinstance(model, (str, Path)):
        encoder = load_encoder(model, show_progress=show_progress, **encoder_options)
    else:
        encoder = model
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

    scores = combine_scores(card, results)
    main = card.main_metric if card.main_metric in scores else aggregate
    suite = SuiteResult(
        suite=card.name, split=next(iter(results.values())).split,
        model=next(iter(results.values())).model, main_metric=main, scores=scores,
        aggregate=aggregate, definition=AGGREGATES[aggregate], members=results, member_files=files,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        summary=_summary_record(card, scores),
    )
    if results_dir is not None:
        write_json(suite.default_path(Path(results_dir)), suite.to_dict())
    return suite


def _definition(card: TaskCard) -> tuple[str, list[str], str | None]:
    """The card's (aggregate, metrics, summary name), checked: one line naming the card if wrong."""
    aggregate = str(card.params.get("aggregate", "mean"))
    if aggregate not in AGGREGATES:
        raise VembedError(f"{card.path}: aggregate '{aggregate}' is not one of {', '.join(AGGREGATES)}")
    metrics = [str(m) for m in card.params.get("metrics", [])]
    if aggregate == "rsum" and not metrics:
        raise VembedError(f"{card.path}: aggregate 'rsum' needs params.metrics, e.g. [hit@1, hit@5, hit@10]")
    summary = card.params.get("summary")
    if summary is not None and summary not in SUMMARIES:
        raise VembedError(f"{card.path or card.name}: summary '{summary}' is not one of {', '.join(SUMMARIES)}")
    return aggregate, metrics, summary


def _summary_parts(name: str) -> tuple[Callable[[Mapping[str, float]], dict[str, float]], dict[str, str]]:
    module, function, labels = SUMMARIES[name].split(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, function), dict(getattr(loaded, labels))


def combine_scores(card: TaskCard, results: Mapping[str, Result]) -> dict[str, float]:
    """The suite's scores from its members' results (member task name -> Result).

    ``<member>/<metric>`` for each listed metric, the aggregate (``rsum`` or
    ``mean``) and, with ``params.summary``, that summary's averages (e.g.
    ``classification`` ... ``overall`` for MMEB). Used by :func:`evaluate_suite`
    and by the leaderboard overview, so both show the same numbers.
    """
    aggregate, metrics, summary = _definition(card)
    scores: dict[str, float] = {}
    for name, result in results.items():
        for metric in metrics:
            scores[f"{name}/{metric}"] = result.scores[metric]
    if aggregate == "rsum":
        scores["rsum"] = 100.0 * sum(r.scores[m] for r in results.values() for m in metrics)
    else:
        scores["mean"] = sum(r.main_score for r in results.values()) / len(results)
    if summary is not None:
        function, _ = _summary_parts(summary)
        scores.update(function({name: r.main_score for name, r in results.items()}))
    return scores


def suite_columns(card: TaskCard) -> dict[str, str]:
    """The suite's headline scores (key -> column label): the summary's averages when the
    card names one (MMEB: meta-tasks, IND, OOD, Overall), else its aggregate."""
    aggregate, _, summary = _definition(card)
    if summary is None:
        return {aggregate: aggregate}
    return _summary_parts(summary)[1]


def _summary_record(card: TaskCard, scores: Mapping[str, float]) -> dict[str, Any]:
    _, _, summary = _definition(card)
    if summary is None:
        return {}
    columns = suite_columns(card)
    return {"name": summary, "columns": columns, "scores": {k: scores[k] for k in columns if k in scores}}


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
    scale = 1.0 if suite.aggregate == "rsum" and suite.main_metric == "rsum" else 100.0
    console.print(f"[bold]{suite.suite}[/] {suite.main_metric} = [bold]{scale * suite.main_score:.2f}[/]"
                  + (f"  ({parts})" if parts else ""))
    if suite.summary:
        from rich.table import Table

        table = Table(title=f"{suite.suite}: {suite.summary['name']} summary (x100)")
        for label in suite.summary["columns"].values():
            table.add_column(label, justify="right")
        table.add_row(*(f"{100 * suite.summary['scores'][key]:.2f}" if key in suite.summary["scores"] else "-"
                        for key in suite.summary["columns"]))
        console.print(table)
    if results_dir is not None:
        console.print(f"suite file: {suite.default_path(Path(results_dir))}")
