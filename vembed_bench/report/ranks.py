"""Significance-aware ranks: which places on a leaderboard are real.

With many close models most adjacent ranks are not separable (mteb's own
discussion found this for its English benchmark), so a rank alone overstates
what the data show. Everything here works on the per-query values of a
board's main metric, aligned by query id, and is reproducible from the seed.

Per board (one task split), with ``x_iq`` the main metric of model ``i`` on
query ``q`` (``n`` queries, ``m`` models):

* **Rank** (observed and per bootstrap replicate): ``1 + #{j : mean_j >
  mean_i + 1e-12}``, so tied means share the *best* rank (the tolerance only
  absorbs float rounding; scores lie in [0, 1]).
* **95% rank interval**: the bootstrap resamples the queries (``n`` indices
  with replacement, the same indices for every model:
  :func:`.stats.bootstrap_means`, the same resampled query sets as the
  leaderboard's Δ intervals), ranks the models in each replicate, and reports
  the 2.5% quantile (numpy ``method="lower"``) and the 97.5% quantile
  (``method="higher"``) of each model's ranks: observed ranks, never
  fractional, and slightly conservative. Two models with identical values tie
  in every replicate, so both keep the shared best rank.
* **Pairwise tests**: for every pair ``i < j`` the difference
  ``mean_i - mean_j`` and the two-sided paired sign-flip permutation p-value
  of :func:`.stats.paired_permutation_pvalue` (scipy's conventions; the same
  sign draws as the leaderboard's p column, so p against rank 1 equals it).
* **Holm** step-down adjustment over all ``P = m(m-1)/2`` pairs of the board:
  with the p-values sorted ``p_(1) <= ... <= p_(P)``,
  ``p~_(k) = min(1, max_{l <= k} (P - l + 1) p_(l))``; a pair *differs* when
  ``p~ <= alpha`` (0.05). This controls the family-wise error over the board.
* **Groups** (compact letter display, as in multiple-comparison tables):
  each letter is a *maximal* set of models no two of which differ; two models
  share a letter exactly when they do not differ. The letters are the maximal
  cliques of the "does not differ" graph, found by Piepho's (2004)
  insert-and-absorb algorithm, and named a, b, ... in order of their
  best-ranked member (so the leader's group is ``a``).
* **Minimum detectable effect** (normal approximation): the smallest true
  mean paired difference that one two-sided paired test at ``alpha`` detects
  with probability ``power`` (0.8): ``MDE = (z_{1-alpha/2} + z_{power}) *
  sd_d / sqrt(n)``, with ``sd_d`` the median over all pairs of the per-query
  standard deviation (``ddof=1``) of ``x_iq - x_jq``. It ignores the Holm
  correction (which only raises the bar).

Across boards: the mean of each model's main metric over a common set of
tasks (see :func:`cross_task_ranks` for which), with rank intervals from a
bootstrap that resamples every task's queries independently in each
replicate (an independent random stream per task, keyed by the board's slug),
recomputes the per-task means and their mean, and ranks as above.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from math import sqrt
from statistics import NormalDist
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from vembed_bench.errors import VembedError
from vembed_bench.report.document import Block, Cell, Heading, Para, Table, fmt_p, fmt_score
from vembed_bench.report.stats import (
    DEFAULT_RESAMPLES,
    align_queries,
    bootstrap_means,
    paired_permutation_pvalue,
)

if TYPE_CHECKING:
    from vembed_bench.report.leaderboard import Board
    from vembed_bench.results import Result

__all__ = [
    "ALPHA",
    "POWER",
    "AlignedBoard",
    "BoardRanks",
    "CrossTaskRanks",
    "align_board",
    "best_ranks",
    "board_ranks",
    "compact_letters",
    "cross_task_rank_blocks",
    "cross_task_ranks",
    "holm",
    "minimum_detectable_effect",
    "rank_blocks",
    "rank_interval",
    "rank_models",
]

ALPHA = 0.05
POWER = 0.8
TIE_TOLERANCE = 1e-12
"""Means closer than this are tied (float rounding of equal sums, not a real difference)."""
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BLOCK_BYTES = 32 * 2**20
"""Pair-difference columns tested at once (bounds memory on large boards)."""
_CROSS_TASK_STREAM = 2
"""First spawn key of the cross-task bootstrap streams (0 and 1 are :mod:`.stats`'s)."""

LabelOf = Callable[["Result"], str]


# ---------------------------------------------------------------------------- statistics


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (same order as the input), capped at 1."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    order = np.argsort(p, kind="stable")
    factors = np.arange(p.size, 0, -1, dtype=np.float64)
    adjusted = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    out = np.empty_like(p)
    out[order] = adjusted
    return out


def best_ranks(means: np.ndarray, tol: float = TIE_TOLERANCE) -> np.ndarray:
    """Rank of every column in every row of ``means`` ``(rows, m)``: 1 + the number of
    columns with a larger mean (more than ``tol``), so ties share the best rank."""
    means = np.atleast_2d(np.asarray(means, dtype=np.float64))
    rows, m = means.shape
    ranks = np.empty((rows, m), dtype=np.int64)
    step = max(1, 2**22 // max(m * m, 1))
    for start in range(0, rows, step):
        block = means[start : start + step]
        ranks[start : start + step] = 1 + np.count_nonzero(
            block[:, None, :] > block[:, :, None] + tol, axis=2
        )
    return ranks


def rank_interval(replicate_ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2.5% (numpy ``lower``) and 97.5% (``higher``) quantiles of each column's ranks."""
    low = np.quantile(replicate_ranks, 0.025, axis=0, method="lower")
    high = np.quantile(replicate_ranks, 0.975, axis=0, method="higher")
    return low.astype(np.int64), high.astype(np.int64)


def minimum_detectable_effect(
    sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER
) -> float:
    """Smallest mean paired difference one two-sided paired z-test at ``alpha`` detects with
    probability ``power``, for per-query differences of standard deviation ``sd`` over ``n``
    queries: ``(z_{1-alpha/2} + z_power) * sd / sqrt(n)`` (normal approximation)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = NormalDist().inv_cdf
    return (z(1.0 - alpha / 2.0) + z(power)) * sd / sqrt(n)


def compact_letters(differ: np.ndarray, *, max_letters: int = len(LETTERS)) -> list[str] | None:
    """Compact letter display of a symmetric "differ" matrix (models in rank order).

    Each letter is a maximal set of models no two of which differ (Piepho's insert-and-absorb:
    start from one set of all models; for each differing pair split every set holding both
    into one without each; drop sets contained in another). Letters go to the sets in order
    of their best-ranked members. ``None`` when more than ``max_letters`` sets are needed.
    """
    differ = np.asarray(differ, dtype=bool)
    m = differ.shape[0]
    sets = [(1 << m) - 1]
    for i in range(m):
        for j in range(i + 1, m):
            if not differ[i, j]:
                continue
            both = (1 << i) | (1 << j)
            split: list[int] = []
            for s in sets:
                split += [s & ~(1 << i), s & ~(1 << j)] if (s & both) == both else [s]
            unique = sorted(set(split), key=lambda s: -s.bit_count())
            sets = []
            for s in unique:  # larger first: a set is kept unless a kept one contains it
                if not any(s | kept == kept for kept in sets):
                    sets.append(s)
            if len(sets) > max_letters:
                return None
    members = sorted(tuple(k for k in range(m) if (s >> k) & 1) for s in sets)
    letters = [""] * m
    for letter, group in zip(LETTERS, members):
        for k in group:
            letters[k] += letter
    return letters


def _pair_pvalues(
    values: np.ndarray, first: np.ndarray, second: np.ndarray, *, n_resamples: int, seed: int
) -> np.ndarray:
    """Permutation p-value of every pair's per-query difference, a block of pairs at a time
    (every call draws the same signs, so blocking does not change the numbers)."""
    n = values.shape[0]
    width = max(1, _BLOCK_BYTES // (8 * n))
    out = [
        np.atleast_1d(
            paired_permutation_pvalue(
                values[:, first[s : s + width]] - values[:, second[s : s + width]],
                n_resamples=n_resamples,
                seed=seed,
            )
        )
        for s in range(0, first.size, width)
    ]
    return np.concatenate(out) if out else np.empty(0)


@dataclass(frozen=True, eq=False)
class BoardRanks:
    """Ranks, rank intervals, pairwise tests and groups of the models of one board.

    Arrays over models follow ``labels`` (the board's order, best first); pair matrices are
    ``(m, m)``, symmetric in the p-values, with ``delta[i, j] = means[i] - means[j]``.
    """

    metric: str
    labels: list[str]
    means: np.ndarray
    ranks: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    delta: np.ndarray
    p_value: np.ndarray
    p_holm: np.ndarray
    letters: list[str] | None
    """Group letters per model; None when more than 52 letters would be needed."""
    sd_median: float | None
    mde: float | None
    n_queries: int
    n_resamples: int
    seed: int
    alpha: float = ALPHA
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(label, reason) of the board's results that could not be ranked with the others."""

    @property
    def n_pairs(self) -> int:
        return len(self.labels) * (len(self.labels) - 1) // 2

    @property
    def differ(self) -> np.ndarray:
        return self.p_holm <= self.alpha

    def separable_adjacent(self) -> int:
        """Adjacent places (in board order) whose models differ after Holm."""
        return sum(bool(self.differ[k, k + 1]) for k in range(len(self.labels) - 1))


def rank_models(
    values: np.ndarray,
    labels: Sequence[str],
    *,
    metric: str,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = ALPHA,
    power: float = POWER,
) -> BoardRanks:
    """Everything in the module docstring for the aligned per-query ``values`` ``(n, m)``
    (columns in the board's order, best first)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(labels) or x.shape[0] == 0:
        raise ValueError(f"values must be (n_queries >= 1, {len(labels)} models), got {x.shape}")
    n, m = x.shape
    means = x.mean(axis=0)
    low, high = rank_interval(best_ranks(bootstrap_means(x, n_resamples=n_resamples, seed=seed)))
    first, second = np.triu_indices(m, k=1)
    p = _pair_pvalues(x, first, second, n_resamples=n_resamples, seed=seed)
    p_value, p_holm = np.ones((m, m)), np.ones((m, m))
    p_value[first, second] = p_value[second, first] = p
    p_holm[first, second] = p_holm[second, first] = holm(p)
    sd_median = mde = None
    if n >= 2 and m >= 2:
        cov = np.cov(x, rowvar=False, ddof=1)
        var = np.diag(cov)[first] + np.diag(cov)[second] - 2.0 * cov[first, second]
        sd_median = float(np.median(np.sqrt(np.maximum(var, 0.0))))
        mde = minimum_detectable_effect(sd_median, n, alpha=alpha, power=power)
    return BoardRanks(
        metric=metric,
        labels=list(labels),
        means=means,
        ranks=best_ranks(means)[0],
        rank_low=low,
        rank_high=high,
        delta=means[:, None] - means[None, :],
        p_value=p_value,
        p_holm=p_holm,
        letters=compact_letters(p_holm <= alpha),
        sd_median=sd_median,
        mde=mde,
        n_queries=n,
        n_resamples=n_resamples,
        seed=seed,
        alpha=alpha,
    )


@dataclass(frozen=True, eq=False)
class AlignedBoard:
    """The main metric of a board's rankable results, one column per model, rows in the
    reference query order."""

    metric: str
    labels: list[str]
    values: np.ndarray
    skipped: list[tuple[str, str]]


def align_board(board: "Board", label_of: LabelOf) -> AlignedBoard:
    """Per-query main-metric values of the board's entries, aligned by query id.

    The reference query set is the one most entries share (ties: the best-ranked entry's);
    an entry scored on other queries, or without per-query values of the main metric, is
    skipped with the reason (results of one board share the data fingerprint, so this only
    happens to damaged or hand-edited files).
    """
    metric = board.main_metric
    usable, skipped = [], []
    for item in board.entries:
        if metric in item.result.per_query.per_query:
            usable.append(item.result)
        else:
            skipped.append((label_of(item.result), f"no per-query values of {metric}"))
    shared: dict[frozenset, int] = {}
    for result in usable:
        key = frozenset(result.per_query.query_ids)
        shared[key] = shared.get(key, 0) + 1
    reference = next(
        (r for r in usable if shared[frozenset(r.per_query.query_ids)] == max(shared.values())),
        None,
    )
    labels, columns = [], []
    for result in usable:
        try:
            _, positions = align_queries(reference.per_query, result.per_query)
        except VembedError as err:
            skipped.append((label_of(result), str(err)))
            continue
        labels.append(label_of(result))
        columns.append(result.per_query.per_query[metric][positions])
    values = np.column_stack(columns) if columns else np.empty((0, 0))
    return AlignedBoard(metric=metric, labels=labels, values=values, skipped=skipped)


def board_ranks(
    board: "Board",
    label_of: LabelOf,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    alpha: float = ALPHA,
) -> BoardRanks | None:
    """:func:`rank_models` on the board's aligned results; None with fewer than two."""
    aligned = align_board(board, label_of)
    if len(aligned.labels) < 2:
        return None
    ranks = rank_models(
        aligned.values,
        aligned.labels,
        metric=aligned.metric,
        seed=seed,
        n_resamples=n_resamples,
        alpha=alpha,
    )
    return replace(ranks, skipped=aligned.skipped)


@dataclass(frozen=True, eq=False)
class CrossTaskRanks:
    """Mean main score over a common set of tasks, with bootstrap rank intervals."""

    labels: list[str]
    """Models, best mean first (ties: by label)."""
    tasks: list[str]
    """Board slugs averaged over."""
    means: np.ndarray
    per_task: np.ndarray
    """``(m, n_tasks)`` per-task means of the per-query main metric."""
    ranks: np.ndarray
    rank_low: np.ndarray
    rank_high: np.ndarray
    n_resamples: int
    seed: int
    left_out: list[tuple[str, int]]
    """(label, number of the tasks it has rankable results on) of the models left out."""


def _task_stream(slug: str) -> tuple[int, int]:
    """A random stream of its own per task, independent of which other tasks take part."""
    return (_CROSS_TASK_STREAM, int.from_bytes(hashlib.sha256(slug.encode()).digest()[:4], "big"))


def cross_task_ranks(
    boards: Sequence["Board"],
    label_of: LabelOf,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> CrossTaskRanks | None:
    """Mean main score per model over common tasks, ranked with bootstrap rank intervals.

    Which tasks and models: each model's set of tasks (boards where it is rankable, see
    :func:`align_board`) and the tasks any two models share are the candidates; the one of at
    least two tasks, covered by at least two models, that maximises (models covering it) ×
    (its tasks), then its tasks, then comes first in sorted slugs, is used, with every model
    rankable on all of its tasks. None when no two models share two tasks.
    """
    aligned = {board.slug: align_board(board, label_of) for board in boards}
    coverage: dict[str, frozenset[str]] = {}
    for slug_, board in aligned.items():
        for label in board.labels:
            coverage[label] = coverage.get(label, frozenset()) | {slug_}

    def covering(tasks: frozenset[str]) -> list[str]:
        return sorted(label for label, own in coverage.items() if tasks <= own)

    owned = list(coverage.values())
    candidates = sorted({a & b for a in owned for b in owned if len(a & b) >= 2}, key=sorted)
    scored = [(len(covering(t)) * len(t), len(t), t) for t in candidates if len(covering(t)) >= 2]
    if not scored:
        return None
    tasks = sorted(max(scored, key=lambda s: (s[0], s[1]))[2])  # max keeps the first of equals
    labels = covering(frozenset(tasks))
    per_task = np.empty((len(labels), len(tasks)))
    boot = np.zeros((n_resamples, len(labels)))
    for t, slug_ in enumerate(tasks):
        board = aligned[slug_]
        columns = [board.labels.index(label) for label in labels]
        x = board.values[:, columns]
        per_task[:, t] = x.mean(axis=0)
        boot += bootstrap_means(x, n_resamples=n_resamples, seed=seed, stream=_task_stream(slug_))
    means = per_task.mean(axis=1)
    order = sorted(range(len(labels)), key=lambda k: (-means[k], labels[k]))
    means, per_task, boot = means[order], per_task[order], boot[:, order] / len(tasks)
    low, high = rank_interval(best_ranks(boot))
    left_out = sorted(
        (label, len(own & set(tasks))) for label, own in coverage.items() if label not in labels
    )
    return CrossTaskRanks(
        labels=[labels[k] for k in order],
        tasks=tasks,
        means=means,
        per_task=per_task,
        ranks=best_ranks(means)[0],
        rank_low=low,
        rank_high=high,
        n_resamples=n_resamples,
        seed=seed,
        left_out=left_out,
    )


# ---------------------------------------------------------------------------- blocks


def _interval_cell(low: int, high: int) -> Cell:
    return Cell(str(low) if low == high else f"{low}–{high}", sort=float(low))


def rank_blocks(
    board: "Board",
    label_of: LabelOf,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    table_id: str | None = None,
) -> list[Block]:
    """The "Ranks" section of a task page (nothing for a board of one model)."""
    if len(board.entries) < 2:
        return []
    ranks = board_ranks(board, label_of, seed=seed, n_resamples=n_resamples)
    blocks: list[Block] = [Heading(2, "Ranks")]
    if ranks is None:
        skipped = align_board(board, label_of).skipped
        reasons = "; ".join(f"{label}: {why}" for label, why in skipped)
        text = f"Fewer than two results can be ranked on the same queries ({reasons})."
        return blocks + [Para((text,))]
    metric, alpha, m = ranks.metric, ranks.alpha, len(ranks.labels)
    rows = []
    for k, label in enumerate(ranks.labels):
        p, p_holm = ranks.p_value[0, k], ranks.p_holm[0, k]
        rows.append(
            [
                Cell(str(ranks.ranks[k]), sort=int(ranks.ranks[k])),
                Cell(label, sort=label),
                Cell(fmt_score(ranks.means[k]), sort=float(ranks.means[k])),
                _interval_cell(ranks.rank_low[k], ranks.rank_high[k]),
                Cell(ranks.letters[k] if ranks.letters else ""),
                Cell("—" if k == 0 else fmt_p(p), sort=None if k == 0 else float(p)),
                Cell("—" if k == 0 else fmt_p(p_holm), sort=None if k == 0 else float(p_holm)),
            ]
        )
    groups = (
        "Models sharing a letter in the group column do not differ significantly; each letter is "
        "a largest set of models no two of which differ (compact letter display)."
        if ranks.letters
        else f"Group letters are not shown: more than {len(LETTERS)} would be needed."
    )
    blocks += [
        Para(
            (
                f"Rank interval: the 2.5% and 97.5% quantiles of a model's rank over "
                f"{ranks.n_resamples:,} bootstrap resamples of the {ranks.n_queries:,} queries "
                f"(seed {ranks.seed}; every model is scored on the same resampled queries; tied "
                f"means share the best rank). Two models differ when the two-sided paired "
                f"sign-flip permutation test on {metric} gives p ≤ {alpha} after Holm's "
                f"correction over all {ranks.n_pairs} pairs of this table. {groups} "
                f"{ranks.separable_adjacent()} of {m - 1} adjacent places differ.",
            )
        ),
        Table(
            columns=["rank", "model", metric, "95% rank interval", "group", "p vs #1"]
            + ["Holm p vs #1"],
            rows=rows,
            numeric=[True, False, True, False, False, True, True],
            table_id=table_id,
        ),
    ]
    if ranks.mde is not None:
        blocks.append(
            Para(
                (
                    f"Minimum detectable effect: with {ranks.n_queries:,} queries, one paired "
                    f"two-sided test at α = {alpha} detects a true difference in {metric} of "
                    f"{fmt_score(ranks.mde)} (×100, like the scores) with 80% power. Normal "
                    "approximation: (z(0.975) + z(0.8)) × s / √n, with s = "
                    f"{fmt_score(ranks.sd_median)} the median over pairs of models of the "
                    "per-query standard deviation of their differences. Smaller differences are "
                    "likely to go unnoticed, and the Holm correction raises the bar further.",
                )
            )
        )
    if ranks.skipped:
        reasons = "; ".join(f"{label} ({why})" for label, why in ranks.skipped)
        blocks.append(Para((f"Not ranked here: {reasons}.",)))
    return blocks


def cross_task_rank_blocks(
    boards: Sequence["Board"],
    label_of: LabelOf,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    table_id: str | None = None,
) -> list[Block]:
    """The overview's "Ranks across tasks" section (nothing when no two models share two tasks)."""
    ranks = cross_task_ranks(boards, label_of, seed=seed, n_resamples=n_resamples)
    if ranks is None:
        return []
    names = {board.slug: f"{board.task}/{board.split}" for board in boards}
    rows = [
        [
            Cell(str(ranks.ranks[k]), sort=int(ranks.ranks[k])),
            Cell(label, sort=label),
            Cell(fmt_score(ranks.means[k]), sort=float(ranks.means[k])),
            _interval_cell(ranks.rank_low[k], ranks.rank_high[k]),
        ]
        for k, label in enumerate(ranks.labels)
    ]
    blocks: list[Block] = [
        Heading(2, "Ranks across tasks"),
        Para(
            (
                f"Mean main score (×100) over the {len(ranks.tasks)} tasks every model below has "
                f"({', '.join(names[t] for t in ranks.tasks)}). 95% rank interval: the 2.5% and "
                f"97.5% quantiles of a model's rank over {ranks.n_resamples:,} bootstrap "
                f"replicates (seed {ranks.seed}), each resampling every task's queries "
                "independently and recomputing every model's per-task means and their mean; tied "
                "means share the best rank.",
            )
        ),
        Table(
            columns=["rank", "model", "mean main score", "95% rank interval"],
            rows=rows,
            numeric=[True, False, True, False],
            table_id=table_id,
        ),
    ]
    if ranks.left_out:
        counts = ", ".join(f"{label} ({n} of {len(ranks.tasks)})" for label, n in ranks.left_out)
        blocks.append(Para((f"Left out (not rankable on all these tasks): {counts}.",)))
    return blocks
