"""Many models x many tasks from one call: plan, skip what exists, run the rest, never stop early.

For each model (loaded at most once, when its first task needs it) and each
task (a suite card runs its members, ``dims`` adds Matryoshka views of one
encode), the runner decides from the overwrite strategy whether an existing
result answers the pair (same weights, same data, same settings: see
:mod:`vembed_bench.evaluation.identity`), and otherwise evaluates it. A pair
that fails is recorded with its one-line reason and the sweep goes on; the
:class:`ResultSet` it returns says which pairs were computed, reused or failed.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Sequence

from vembed_bench.data import TaskCard, resolve_card
from vembed_bench.data.suites import definition, is_suite, metric_k, suite_members
from vembed_bench.errors import VembedError
from vembed_bench.evaluation.dense import DenseMode
from vembed_bench.evaluation.identity import settings_key, settings_of
from vembed_bench.evaluation.multivector import MultiVectorMode
from vembed_bench.evaluation.stages import (
    Context,
    ModelHandle,
    attach_reference,
    evaluate_pair,
    load_data,
    save,
    task_plan,
)
from vembed_bench.evaluation.suites import SuiteResult, combine
from vembed_bench.options import EncoderOptions, EvalOptions, OverwriteStrategy
from vembed_bench.results import Result, load_result, result_path

log = logging.getLogger("vembed_bench.run")

COMPUTED, REUSED, FAILED, PLANNED = "computed", "reused", "failed", "planned"


@dataclass
class Outcome:
    """What happened to one (model, task[, dim]) pair of a run."""

    model: str
    task: str
    status: str
    """``computed``, ``reused`` (an identical stored result), ``failed`` or ``planned`` (dry run)."""
    result: Result | SuiteResult | None = None
    path: Path | None = None
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False)
    dim: int | None = None
    note: str = ""
    """Why a pair was reused or would be skipped (dry run), for the console."""
    seconds: float = 0.0

    @property
    def main_score(self) -> float | None:
        return None if self.result is None else self.result.main_score

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        result = self.result
        return {
            "model": self.model, "task": self.task, "status": self.status, "dim": self.dim,
            "split": getattr(result, "split", None),
            "settings_key": getattr(result, "settings_key", None),
            "main_metric": getattr(result, "main_metric", None), "main_score": self.main_score,
            "scores": dict(result.scores) if result is not None else None,
            "path": str(self.path) if self.path else None, "error": self.error, "note": self.note or None,
            "seconds": round(self.seconds, 3),
        }


class ResultSet(Sequence[Outcome]):
    """The outcomes of a run, in order; ``results`` are the per-task Results it produced or reused."""

    def __init__(self, outcomes: Sequence[Outcome], *, models: Sequence[str] = (), tasks: Sequence[str] = ()) -> None:
        self.outcomes = list(outcomes)
        self.models = list(models)
        self.tasks = list(tasks)
        self.model_loads: dict[str, int] = {}

    def __getitem__(self, index: Any) -> Any:
        return self.outcomes[index]

    def __len__(self) -> int:
        return len(self.outcomes)

    def __iter__(self) -> Iterator[Outcome]:
        return iter(self.outcomes)

    @property
    def results(self) -> list[Result]:
        return [o.result for o in self.outcomes if isinstance(o.result, Result)]

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> dict[str, dict[str, float | None]]:
        """Main scores, model -> task -> score (None where the pair failed); the full-size result
        (else the widest Matryoshka view) of each pair."""
        table: dict[str, dict[str, float | None]] = {m: {t: None for t in self.tasks} for m in self.models}
        widest: dict[tuple[str, str], int] = {}
        for outcome in self.outcomes:
            if outcome.task not in self.tasks or outcome.model not in table or outcome.result is None:
                continue
            width = outcome.dim or 1 << 30  # the full-size result wins over any Matryoshka view
            if width >= widest.get((outcome.model, outcome.task), 0):
                widest[(outcome.model, outcome.task)] = width
                table[outcome.model][outcome.task] = outcome.main_score
        return table

    def to_pandas(self):
        """One row per outcome: model, task, split, dim, settings_key, status, main metric and score, path."""
        import pandas as pd

        columns = ["model", "task", "split", "dim", "settings_key", "status", "main_metric", "main_score",
                   "path", "error"]
        return pd.DataFrame([{k: o.to_dict()[k] for k in columns} for o in self.outcomes], columns=columns)

    def to_json(self) -> str:
        return json.dumps({"models": self.models, "tasks": self.tasks, "table": self.table(),
                           "pairs": [o.to_dict() for o in self.outcomes], "failed": len(self.failed),
                           "model_loads": self.model_loads}, indent=1, ensure_ascii=False)


@dataclass
class ModelSpec:
    """A model as listed by the user: a folder, hub id or object, and an optional display name."""

    source: Any
    name: str | None = None

    @property
    def key(self) -> str:
        if isinstance(self.source, (str, Path)):
            path = Path(str(self.source)).expanduser()
            return f"{path.resolve() if path.exists() else self.source}|{self.name or ''}"
        return f"object:{id(self.source)}|{self.name or ''}"


def resolve_tasks(tasks: Sequence[Any]) -> list[TaskCard]:
    """Task cards for names, card paths, BEIR folders or cards; each once (a repeat is said and dropped)."""
    cards: dict[str, TaskCard] = {}
    for task in tasks:
        card = task if isinstance(task, TaskCard) else resolve_card(task)
        if card.name in cards:
            log.warning("task %s is listed more than once; it runs once", card.name)
            continue
        if is_suite(card):
            definition(card)
            for member in suite_members(card):
                resolve_card(member)
        cards[card.name] = card
    return list(cards.values())


def unique_models(models: Sequence[ModelSpec]) -> list[ModelSpec]:
    seen: dict[str, ModelSpec] = {}
    for spec in models:
        if spec.key in seen:
            log.warning("model %s is listed more than once; it runs once", spec.name or spec.source)
            continue
        seen[spec.key] = spec
    return list(seen.values())


def run(models: Sequence[ModelSpec], tasks: Sequence[Any], eval_options: EvalOptions,
        encoder_options: EncoderOptions, *, dry_run: bool = False,
        on_pair: Callable[[Outcome], None] | None = None) -> ResultSet:
    """Evaluate every model on every task (see the module docstring).

    Everything that can be checked without encoding is checked first (task and
    suite cards, options, writable folders), so a bad input stops the run before
    any work. ``on_pair`` is called after each pair (progress display).
    """
    cards = resolve_tasks(tasks)
    specs = unique_models(models)
    if not cards or not specs:
        raise VembedError("nothing to evaluate: give at least one --model and one --task (or --benchmark)")
    for card in cards:  # K values and main metric of every task a pair will score
        for member in ([resolve_card(m) for m in suite_members(card)] if is_suite(card) else [card]):
            task_plan(member, eval_options, _suite_ks(card))
    distributed = eval_options.ray is not None or bool(encoder_options.devices)
    for spec in specs:
        check_source(spec, encoder_options)
        if distributed:
            from vembed_bench.distributed import check_distributable

            check_distributable(spec.source)
    if not dry_run:
        check_writable(eval_options)
    outcomes: list[Outcome] = []
    labels: list[str] = []
    loads: dict[str, int] = {}
    with _workers(eval_options, encoder_options, distributed and not dry_run) as pre_encode:
        context = Context(eval_options, pre_encode=pre_encode)
        for spec in specs:
            handle = ModelHandle(spec.source, encoder_options, name=spec.name)
            label = _label(handle)
            labels.append(label)
            try:
                for card in cards:
                    for outcome in _run_task(card, handle, label, context, dry_run):
                        outcomes.append(outcome)
                        if on_pair is not None:
                            on_pair(outcome)
            finally:
                loads[label] = handle.loads
                handle.close()
    result_set = ResultSet(outcomes, models=labels, tasks=[c.name for c in cards])
    result_set.model_loads = loads
    return result_set


def _workers(eval_options: EvalOptions, encoder_options: EncoderOptions, wanted: bool) -> ContextManager[Any]:
    """The run's encoding workers (a Ray cluster, one process per device), or none."""
    if not wanted:
        return nullcontext(None)
    from vembed_bench.distributed import pre_encoder

    return pre_encoder(eval_options, encoder_options)


def variants(options: EvalOptions) -> list[int | None]:
    """The sizes each task is scored at: all dimensions, then each Matryoshka ``dims`` size."""
    return [None, *(options.dims or ())]


def pair_count(models: Sequence[ModelSpec], tasks: Sequence[Any], eval_options: EvalOptions) -> int:
    """How many outcomes a run will report (for a progress bar): members and dims included."""
    per_model = 0
    for card in resolve_tasks(tasks):
        members = len(suite_members(card)) + 1 if is_suite(card) else 1
        per_model += members * len(variants(eval_options))
    return per_model * len(unique_models(models))


def check_source(spec: ModelSpec, options: EncoderOptions) -> None:
    """Refuse a model path that does not exist or whose type cannot be told, before any work.

    Reading a folder's small JSON files is enough for that; a model whose weights
    then fail to load fails only its own pairs, and the sweep goes on.
    """
    if not isinstance(spec.source, (str, Path)):
        return
    from vembed_bench.encoders.loader import is_multivector_model, resolve_source

    resolve_source(spec.source, options, multi_vector=is_multivector_model(spec.source, options), fetch=False)


def check_writable(options: EvalOptions) -> None:
    """Refuse an unwritable results or cache folder before any encoding (one line naming it)."""
    folders = [options.results_dir] if options.results_dir is not None else []
    if options.cache != "off":
        from vembed_bench.cache import default_cache_dir

        folders.append(Path(options.cache_dir) if options.cache_dir else default_cache_dir())
    for folder in folders:
        _check_folder(Path(folder))


def _check_folder(folder: Path) -> None:
    """Probe the folder (or, if it does not exist yet, its nearest existing parent) with a
    temporary file that is removed at once: nothing is left behind if the run stops later."""
    import os
    import tempfile

    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise VembedError(f"{probe} is a file, not a folder; choose another --results-dir / --cache-dir")
    try:
        fd, name = tempfile.mkstemp(prefix=".vembed-write-check-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise VembedError(f"cannot write to {folder} ({err.strerror or err}); choose a writable "
                          "--results-dir / --cache-dir") from None


# -- one task of one model ---------------------------------------------------------------------------


def _label(handle: ModelHandle) -> str:
    try:
        return handle.identity()[0]
    except VembedError:
        return handle.label  # the load error is reported for each of its pairs


def _suite_ks(card: TaskCard) -> list[int]:
    if not is_suite(card):
        return []
    return [metric_k(m) for m in definition(card)[1]]


def _run_task(card: TaskCard, handle: ModelHandle, label: str, context: Context, dry_run: bool) -> list[Outcome]:
    if not is_suite(card):
        return _run_member(card, handle, label, context, dry_run)
    outcomes: list[Outcome] = []
    members: dict[str, Result] = {}
    files: dict[str, str] = {}
    for name in suite_members(card):
        member = resolve_card(name)
        for outcome in _run_member(member, handle, label, context, dry_run, extra_ks=_suite_ks(card)):
            outcomes.append(outcome)
            if outcome.dim is None and isinstance(outcome.result, Result):
                members[member.name] = outcome.result
                files[member.name] = str(outcome.path) if outcome.path else ""
    if dry_run:
        return outcomes + [Outcome(label, card.name, PLANNED, note=f"suite of {', '.join(suite_members(card))}")]
    if len(members) < len(suite_members(card)):
        missing = [m for m in suite_members(card) if resolve_card(m).name not in members]
        return outcomes + [Outcome(label, card.name, FAILED, error=f"suite {card.name}: member(s) "
                                   f"{', '.join(missing)} failed; no combined score")]
    suite = combine(card, members, files, context.options.results_dir, context.options.reference_model)
    status = COMPUTED if any(o.status == COMPUTED for o in outcomes) else REUSED
    path = suite.default_path(context.options.results_dir) if context.options.results_dir else None
    return outcomes + [Outcome(label, card.name, status, result=suite, path=path)]


def _run_member(card: TaskCard, handle: ModelHandle, label: str, context: Context, dry_run: bool, *,
                extra_ks: Sequence[int] = ()) -> list[Outcome]:
    """All variants (full size, Matryoshka dims) of one model on one task, sharing one data load."""
    options = context.options
    outcomes: list[Outcome] = []
    data = None
    for dim in variants(options):
        start = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            mode = MultiVectorMode(dim=dim) if handle.multi_vector else DenseMode(dim=dim)
            if not handle.multi_vector and options.maxsim != "exact":
                raise VembedError(f"--maxsim {options.maxsim} applies to multi-vector (late interaction) models; "
                                  f"{label} is single-vector (use --backend / --index for its search)")
            if dry_run:
                outcomes.append(_plan(card, handle, label, mode, options))
                continue
            if data is None:
                data = load_data(card, options, timings)
            outcome = _reuse(card, data, handle, label, mode, options, extra_ks)
            if outcome is None:
                scored = evaluate_pair(card, data, handle, mode, context, timings=timings, extra_ks=extra_ks)
                if any(o.result is not None and o.result.settings_key == scored.result.settings_key
                       for o in outcomes):
                    continue  # a size equal to the full one: the plain result already covers it
                outcome = Outcome(label, card.name, COMPUTED, result=scored.result, path=save(scored, options),
                                  dim=scored.result.model_info.get("matryoshka_dim"))
        except Exception as err:  # noqa: BLE001 - one broken pair must not stop the sweep
            if not isinstance(err, VembedError):
                log.debug("pair %s x %s failed", label, card.name, exc_info=True)
            message = str(err) if isinstance(err, VembedError) else f"{type(err).__name__}: {err}"
            outcome = Outcome(label, card.name, FAILED, error=message, exception=err, dim=dim)
        outcome.seconds = time.perf_counter() - start
        outcomes.append(outcome)
        if outcome.status == FAILED and handle.load_error is not None:
            break  # the model cannot load: its other variants would fail the same way
    return outcomes


def _is_load_error(err: BaseException, handle: ModelHandle) -> bool:
    return getattr(handle, "load_error", None) is err


def _planned_path(card: TaskCard, handle: ModelHandle, mode: Any, options: EvalOptions,
                  limit: int | None) -> tuple[Path, dict[str, Any]]:
    name, weights = handle.identity()
    settings = settings_of(options, handle.options, multi_vector=mode.multi_vector, dim=mode.dim, limit=limit)
    split = options.split or card.splits[0]
    return result_path(options.results_dir, name, weights, card.name, split, settings_key(settings)), settings


def _reuse(card: TaskCard, data: Any, handle: ModelHandle, label: str, mode: Any,
           options: EvalOptions, extra_ks: Sequence[int] = ()) -> Outcome | None:
    """The stored result that answers this pair under the overwrite strategy, or None to compute."""
    strategy = options.overwrite
    if options.results_dir is None or strategy is OverwriteStrategy.ALWAYS:
        return None
    path, settings = _planned_path(card, handle, mode, options, data.meta.get("limit"))
    if not path.is_file():
        if strategy is OverwriteStrategy.ONLY_CACHE:
            raise VembedError(f"no stored result at {path} (--overwrite-strategy only-cache runs nothing)")
        return None
    stored = load_result(path)
    attach_reference(stored, card, options.reference_model)  # in memory: the file stays as it was
    if strategy in (OverwriteStrategy.NEVER, OverwriteStrategy.ONLY_CACHE):
        return Outcome(label, card.name, REUSED, result=stored, path=path, dim=mode.dim,
                       note=f"kept the stored result (--overwrite-strategy {strategy.value})")
    from vembed_bench.data import data_fingerprint
    from vembed_bench.metrics import metric_names

    differences = []
    if stored.task_info.get("data_fingerprint") != data_fingerprint(data):
        differences.append("the task data changed")
    if _comparable(stored.settings) != _comparable(settings):
        differences.append("its settings differ")
    if stored.weights_fingerprint != handle.identity()[1]:
        differences.append("the weights differ")
    ks, main_metric = task_plan(card, options, extra_ks)
    if stored.main_metric != main_metric or not set(metric_names(ks)) <= set(stored.scores):
        differences.append(f"it lacks the K values {ks} or the main metric {main_metric} asked for")
    if differences:
        log.info("stored result %s is stale (%s); recomputing", path, " and ".join(differences))
        return None
    log.info("reusing %s (identical weights, data and settings)", path)
    return Outcome(label, card.name, REUSED, result=stored, path=path, dim=mode.dim,
                   note="identical weights, data and settings")


def _comparable(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def _plan(card: TaskCard, handle: ModelHandle, label: str, mode: Any, options: EvalOptions) -> Outcome:
    """What a dry run reports for a pair: where its result would go and whether one is there."""
    if options.results_dir is None:
        return Outcome(label, card.name, PLANNED, dim=mode.dim, note="would run (results are not written)")
    path, _ = _planned_path(card, handle, mode, options, options.limit or card.limit)
    exists = path.is_file()
    strategy = options.overwrite
    if not exists:
        note = ("would fail: no stored result (only-cache)" if strategy is OverwriteStrategy.ONLY_CACHE
                else "would run")
    elif strategy is OverwriteStrategy.ALWAYS:
        note = "would run and replace the stored result"
    elif strategy is OverwriteStrategy.ONLY_MISSING:
        note = "would reuse the stored result if its data and settings are unchanged"
    else:
        note = "would keep the stored result"
    return Outcome(label, card.name, PLANNED, path=path, dim=mode.dim, note=note)
