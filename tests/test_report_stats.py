"""Paired bootstrap intervals and permutation p-values: known answers, and scipy as reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vembed_bench.errors import VembedError
from vembed_bench.metrics import MetricScores
from vembed_bench.report.stats import (
    align_queries,
    paired_bootstrap_ci,
    paired_deltas,
    paired_permutation_pvalue,
)
from vembed_bench.results import Result


def scipy_paired_p(
    tuned: np.ndarray, base: np.ndarray, n_resamples: int = 10_000, seed: int = 0
) -> float:
    res = stats.permutation_test(
        (tuned, base),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=n_resamples,
        alternative="two-sided",
        rng=seed,
    )
    return float(res.pvalue)


def test_identical_systems_give_a_zero_interval_and_p_one():
    base = np.random.default_rng(0).random(200)
    low, high = paired_bootstrap_ci(base - base)
    assert (low, high) == (0.0, 0.0)
    assert paired_permutation_pvalue(base - base) == 1.0


def test_uniform_shift_gives_an_interval_at_the_shift():
    base = np.random.default_rng(1).random(150)
    low, high = paired_bootstrap_ci((base + 0.07) - base)
    assert low == pytest.approx(0.07, abs=1e-12) and high == pytest.approx(0.07, abs=1e-12)
    assert paired_permutation_pvalue((base + 0.07) - base) == pytest.approx(2 / 10_001)


def test_noisy_shift_interval_matches_normal_theory_and_scipy():
    rng = np.random.default_rng(2)
    base = rng.random(400)
    diffs = 0.05 + rng.normal(0.0, 0.2, size=400)
    low, high = paired_bootstrap_ci(diffs)
    mean, se = diffs.mean(), diffs.std(ddof=1) / np.sqrt(diffs.size)
    assert low < mean < high
    assert (high - low) == pytest.approx(2 * 1.959964 * se, rel=0.08)
    assert (low + high) / 2 == pytest.approx(mean, abs=0.1 * se)
    ref = stats.bootstrap(
        (base + diffs - base,), np.mean, method="percentile", n_resamples=10_000, rng=0
    )
    width = high - low
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)


def test_interval_covers_the_true_shift_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    trials, covered = 300, 0
    for trial in range(trials):
        diffs = 0.1 + rng.normal(0.0, 0.3, size=60)
        low, high = paired_bootstrap_ci(diffs, n_resamples=2_000, seed=trial)
        covered += low <= 0.1 <= high
    # Percentile bootstrap undercovers slightly at n=60; 95% nominal, binomial sd ~1.3%.
    assert 0.89 <= covered / trials <= 0.985


@pytest.mark.parametrize("n", [8, 12, 13])
def test_exact_p_value_equals_scipy(n):
    rng = np.random.default_rng(n)
    base = rng.random(n)
    tuned = base + rng.normal(0.08, 0.15, size=n)
    assert 2**n <= 10_000  # both sides enumerate all sign patterns
    assert paired_permutation_pvalue(tuned - base) == pytest.approx(
        scipy_paired_p(tuned, base), abs=1e-12
    )


def test_exact_p_value_with_ties_and_zeros_equals_scipy():
    base = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1], dtype=float)  # hit@k style 0/1 scores
    tuned = np.array([1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=float)
    assert paired_permutation_pvalue(tuned - base) == pytest.approx(
        scipy_paired_p(tuned, base), abs=1e-12
    )


@pytest.mark.parametrize("n, shift", [(40, 0.05), (300, 0.02), (300, 0.0)])
def test_random_p_value_agrees_with_scipy_within_monte_carlo_error(n, shift):
    rng = np.random.default_rng(n)
    base = rng.random(n)
    tuned = base + rng.normal(shift, 0.15, size=n)
    ours = paired_permutation_pvalue(tuned - base)
    ref = scipy_paired_p(tuned, base)
    # Two independent 10,000-draw estimates: sd of the difference <= ~0.007 for any p.
    assert ours == pytest.approx(ref, abs=0.025)


def test_metrics_share_resamples_and_seed_makes_it_reproducible():
    rng = np.random.default_rng(4)
    d = rng.normal(0.02, 0.2, size=(80, 3))
    low, high = paired_bootstrap_ci(d, seed=5)
    p = paired_permutation_pvalue(d, seed=5)
    for j in range(3):  # one metric alone draws the same resamples (equal up to float rounding)
        assert paired_bootstrap_ci(d[:, j], seed=5) == pytest.approx((low[j], high[j]), rel=1e-12)
        assert paired_permutation_pvalue(d[:, j], seed=5) == p[j]
    assert paired_bootstrap_ci(d, seed=5)[0].tolist() == low.tolist()
    assert paired_bootstrap_ci(d[:, 0], seed=6) != (low[0], high[0])


def _result(query_ids, values, model="m") -> Result:
    values = np.asarray(values, dtype=float)
    scores = MetricScores(
        query_ids=list(query_ids),
        per_query={"hit@1": values, "ndcg@10": values / 2},
        aggregate={"hit@1": float(values.mean()), "ndcg@10": float(values.mean() / 2)},
    )
    return Result(
        task="t",
        split="test",
        model=model,
        main_metric="ndcg@10",
        scores=scores.aggregate,
        per_query=scores,
        k_values=[1, 10],
        metric_definitions={},
        model_info={"fingerprint": model},
        task_info={"data_fingerprint": "x", "n_queries": len(values), "n_corpus": 5},
        search_info={"index": "flat", "exact": True},
        embedding_dim=4,
        seed=0,
        limit=None,
        timings={},
        environment={},
    )


def test_paired_deltas_align_by_query_id_not_by_position():
    ids = [f"q{i}" for i in range(30)]
    rng = np.random.default_rng(5)
    base_values = rng.integers(0, 2, 30).astype(float)
    tuned_values = np.clip(base_values + rng.integers(0, 2, 30), 0, 1)
    order = rng.permutation(30)
    base = _result(ids, base_values)
    tuned_shuffled = _result([ids[i] for i in order], tuned_values[order], model="t")
    tuned_ordered = _result(ids, tuned_values, model="t")
    a = paired_deltas(base, tuned_shuffled)
    b = paired_deltas(base, tuned_ordered)
    assert a == b
    assert [d.metric for d in a] == ["ndcg@10", "hit@1"]  # main metric first
    assert a[1].delta == pytest.approx(tuned_values.mean() - base_values.mean())


def test_different_query_sets_are_refused():
    base = _result(["a", "b", "c"], [1, 0, 1])
    other = _result(["a", "b", "d"], [1, 1, 1])
    with pytest.raises(
        VembedError, match="different queries.*1 only in the first, 1 only in the second"
    ):
        align_queries(base.per_query, other.per_query)
    with pytest.raises(VembedError, match="different queries"):
        paired_deltas(base, other)
