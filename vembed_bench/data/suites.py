"""Suite cards: one task name that stands for several member tasks and how to combine them.

A suite card has ``loader: suite`` and names its members and the combination::

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
names a breakdown the suite defines on top (``mmeb``: Precision@1 averaged per
meta-task, in- and out-of-distribution and overall, as in the VLM2Vec table).

This module only defines suites and combines member scores (anything with
``scores`` and ``main_score``), so both the evaluation (which runs the members)
and the leaderboard (which reads their result files) compute the same numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from vembed_bench.data.cards import TaskCard
from vembed_bench.errors import VembedError

SUITE_LOADER = "suite"

AGGREGATES = {
    "rsum": "sum over member tasks of the listed metrics, in percent (Rsum: R@1+R@5+R@10 of "
            "text-to-image plus image-to-text, at most 600)",
    "mean": "mean of the member tasks' main scores",
}


def _mmeb_summary() -> tuple[Callable[[Mapping[str, float]], dict[str, float]], dict[str, str]]:
    from vembed_bench.data.mmeb import SUMMARY_LABELS, summary_scores

    return summary_scores, dict(SUMMARY_LABELS)


SUMMARIES: dict[str, Callable[[], tuple[Callable[[Mapping[str, float]], dict[str, float]], dict[str, str]]]] = {
    "mmeb": _mmeb_summary,
}
"""``params.summary`` -> (function of member task name -> main score giving flat averages, labels)."""


def is_suite(card: TaskCard) -> bool:
    return card.loader == SUITE_LOADER


def suite_members(card: TaskCard) -> list[str]:
    tasks = card.params.get("tasks")
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks):
        raise VembedError(f"{card.path or card.name}: a suite card needs params.tasks, a list of task names")
    return list(tasks)


def definition(card: TaskCard) -> tuple[str, list[str], str | None]:
    """The card's (aggregate, metrics, summary name), checked: one line naming the card if wrong."""
    aggregate = str(card.params.get("aggregate", "mean"))
    if aggregate not in AGGREGATES:
        raise VembedError(f"{card.path}: aggregate '{aggregate}' is not one of {', '.join(AGGREGATES)}")
    metrics = [str(m) for m in card.params.get("metrics", [])]
    if aggregate == "rsum" and not metrics:
        raise VembedError(f"{card.path}: aggregate 'rsum' needs params.metrics, e.g. [hit@1, hit@5, hit@10]")
    for metric in metrics:
        metric_k(metric)
    summary = card.params.get("summary")
    if summary is not None and summary not in SUMMARIES:
        raise VembedError(f"{card.path or card.name}: summary '{summary}' is not one of {', '.join(SUMMARIES)}")
    return aggregate, metrics, summary


def metric_k(metric: str) -> int:
    """``hit@10`` -> 10 (the K a member must compute for a suite metric)."""
    _, _, k = metric.partition("@")
    if not k.isdigit():
        raise VembedError(f"suite metric '{metric}' must look like name@k, e.g. hit@1")
    return int(k)


def combine_scores(card: TaskCard, results: Mapping[str, Any]) -> dict[str, float]:
    """The suite's scores from its members' results (member task name -> result).

    ``<member>/<metric>`` for each listed metric, the aggregate (``rsum`` or
    ``mean``) and, with ``params.summary``, that summary's averages (e.g.
    ``classification`` ... ``overall`` for MMEB).
    """
    aggregate, metrics, summary = definition(card)
    scores: dict[str, float] = {}
    for name, result in results.items():
        for metric in metrics:
            scores[f"{name}/{metric}"] = result.scores[metric]
    if aggregate == "rsum":
        scores["rsum"] = 100.0 * sum(r.scores[m] for r in results.values() for m in metrics)
    else:
        scores["mean"] = sum(r.main_score for r in results.values()) / len(results)
    if summary is not None:
        function, _ = SUMMARIES[summary]()
        scores.update(function({name: r.main_score for name, r in results.items()}))
    return scores


def suite_columns(card: TaskCard) -> dict[str, str]:
    """The suite's headline scores (key -> column label): the summary's averages when the
    card names one (MMEB: meta-tasks, IND, OOD, Overall), else its aggregate."""
    aggregate, _, summary = definition(card)
    if summary is None:
        return {aggregate: aggregate}
    return SUMMARIES[summary]()[1]


def summary_record(card: TaskCard, scores: Mapping[str, float]) -> dict[str, Any]:
    """``{"name", "columns": key -> label, "scores": key -> value}`` when the card names a summary."""
    _, _, summary = definition(card)
    if summary is None:
        return {}
    columns = suite_columns(card)
    return {"name": summary, "columns": columns, "scores": {k: scores[k] for k in columns if k in scores}}
