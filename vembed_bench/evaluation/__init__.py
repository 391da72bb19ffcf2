"""The evaluation layer: one dispatcher over the stages, the modes and the runner.

:func:`evaluate` is the single entry point (the CLI's ``eval`` and the Python
API both come here). It takes one or many models and one or many tasks (or a
benchmark card), sorts its keyword options into the typed
:class:`~vembed_bench.options.EvalOptions` and
:class:`~vembed_bench.options.EncoderOptions`, and lets the runner pick the mode
of each pair: dense or multi-vector (from the model), a suite (from the card),
Matryoshka views (``dims``).
"""

from __future__ import annotations

from typing import Any, Sequence

from vembed_bench.evaluation.runner import ModelSpec, Outcome, ResultSet, run
from vembed_bench.evaluation.suites import SuiteResult
from vembed_bench.options import EncoderOptions, EvalOptions, split_options

__all__ = ["ModelSpec", "Outcome", "ResultSet", "SuiteResult", "evaluate", "run"]


def evaluate(
    task: Any = None,
    model: Any = None,
    *,
    benchmark: str | Sequence[str] | None = None,
    model_name: str | Sequence[str | None] | None = None,
    options: EvalOptions | None = None,
    encoder_options: EncoderOptions | None = None,
    dry_run: bool = False,
    **values: Any,
) -> Any:
    """Evaluate ``model`` on ``task``; with lists (or a benchmark, or ``dims``) a whole sweep.

    ``task``: a card name, card path, BEIR folder or :class:`~vembed_bench.data.TaskCard`,
    or a list of them; ``benchmark``: a benchmark card name (adds its tasks).
    ``model``: a folder, hub id or an object with an ``encode`` method, or a list;
    ``model_name``: its display name (a list pairs with a list of models).
    Other keywords are the fields of :class:`~vembed_bench.options.EvalOptions`
    (``split``, ``limit``, ``seed``, ``k_values``, ``backend``, ``index``, ``dims``,
    ``overwrite``, ``results_dir`` (None writes nothing), ``save_predictions``...)
    and of :class:`~vembed_bench.options.EncoderOptions` (``pooling``,
    ``query_prompt``, ``max_length``, ``device``, ``dtype``...).

    One model on one task returns its :class:`~vembed_bench.results.Result` (a
    :class:`SuiteResult` for a suite card) and raises if it failed; anything more
    returns a :class:`ResultSet` (``.results``, ``.failed``, ``.table()``,
    ``.to_pandas()``) in which a failed pair does not stop the others.
    """
    eval_values, encoder_values = split_options(values)
    if options is not None:
        eval_values = options.with_(**_set_fields(values, EvalOptions))
    if encoder_options is not None:
        encoder_values = encoder_options.with_(**_set_fields(values, EncoderOptions))
    tasks = _as_list(task)
    if benchmark is not None:
        from vembed_bench.data.benchmarks import resolve_benchmark

        for name in _as_list(benchmark):
            tasks.extend(resolve_benchmark(name).tasks)
    models = _as_list(model)
    names = _as_list(model_name) if model_name is not None else [None] * len(models)
    if len(names) != len(models):
        from vembed_bench.errors import VembedError

        raise VembedError(f"{len(names)} model names for {len(models)} models; give one name per model")
    specs = [ModelSpec(source, name) for source, name in zip(models, names)]
    result_set = run(specs, tasks, eval_values, encoder_values, dry_run=dry_run)
    single = (not isinstance(task, (list, tuple)) and not isinstance(model, (list, tuple)) and benchmark is None
              and not eval_values.dims and not dry_run)
    if not single:
        return result_set
    last = result_set[-1]  # a suite's combined outcome comes after its members'
    failed = next((o for o in result_set if o.exception is not None), None)
    if failed is not None:
        raise failed.exception
    return last.result


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _set_fields(values: dict[str, Any], cls: type) -> dict[str, Any]:
    from dataclasses import fields

    names = {f.name for f in fields(cls)}
    return {k: v for k, v in values.items() if k in names}
