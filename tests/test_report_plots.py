"""Plots: written where the pages link them, byte-stable, and never able to change the Markdown."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys

import numpy as np
import pytest
from conftest import REPO

from vembed_bench.report.build import write_leaderboards

matplotlib = pytest.importorskip("matplotlib", reason="plots need matplotlib")

FIXTURES = REPO / "tests" / "data" / "results"


def snapshot(folder, suffixes=(".md", ".png", ".svg", ".csv", ".tex", ".html")):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.suffix in suffixes
    }


def test_plots_are_linked_stable_and_do_not_touch_global_matplotlib_state(tmp_path, monkeypatch):
    shutil.copytree(FIXTURES, tmp_path / "results")
    out = tmp_path / "out"
    backend = matplotlib.get_backend()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    write_leaderboards([tmp_path / "results"], out)
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot

    pngs = [
        "docs_en-test.recall",
        "faq_en-test.matryoshka",
        "faq_en-test.recall",
        "products_i2i-test.recall",
        "run-text-small-faq.loss",
    ]
    recall = [name for name in pngs if name.endswith(".recall")]
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == sorted(
        [f"{n}.png" for n in pngs] + [f"{n}.svg" for n in pngs] + [f"{n}.csv" for n in recall]
    )
    for name in pngs:  # the SVG twin is a complete SVG document without a date
        svg = (out / "plots" / f"{name}.svg").read_text()
        assert svg.rstrip().endswith("</svg>") and "<dc:date>" not in svg
    linked = set()
    for page in out.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#]+\.(?:png|svg|csv))\)", page.read_text()):
            assert (page.parent / target).is_file(), (page, target)
            linked.add((page.parent / target).resolve().name)
    assert set(plots) <= linked

    first = snapshot(out)
    write_leaderboards([tmp_path / "results"], out)
    assert snapshot(out) == first  # Markdown, PNG and HTML bytes all unchanged

    # Different PNG bytes (another resolution) must leave every Markdown byte as it was.
    from vembed_bench.report import plots as plots_module

    monkeypatch.setitem(plots_module._RC, "savefig.dpi", 60)
    write_leaderboards([tmp_path / "results"], out)
    second = snapshot(out)
    assert second["plots/faq_en-test.recall.png"] != first["plots/faq_en-test.recall.png"]
    assert {k: v for k, v in second.items() if k.endswith(".md")} == {
        k: v for k, v in first.items() if k.endswith(".md")
    }


def _numpy_band(values: np.ndarray, seed: int, n_resamples: int) -> tuple[float, float]:
    """The 95% percentile bootstrap interval of the mean, written out with plain numpy: draw
    query indices with replacement from the seed's bootstrap stream, average, take percentiles."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    idx = rng.integers(0, len(values), size=(n_resamples, len(values)))
    low, high = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def test_recall_bands_come_from_a_seeded_bootstrap_over_queries(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "results")
    out = tmp_path / "out"
    write_leaderboards([tmp_path / "results"], out, html=False)
    with (out / "plots" / "faq_en-test.recall.csv").open(newline="") as handle:
        points = list(csv.DictReader(handle))
    with (out / "tasks" / "faq_en-test.csv").open(newline="") as handle:
        files = {row["system"]: out / "tasks" / row["result"] for row in csv.DictReader(handle)}
    # One curve per ranked row: the run folder's copy of text-small is not drawn twice.
    assert sorted({p["system"] for p in points}) == sorted(files)
    assert len(points) == len(files) * 3  # recall@1, @5, @10
    widths = []
    for point in points:
        record = json.loads(files[point["system"]].read_text())
        metric = point["metric"]
        assert metric == f"recall@{point['k']}"
        values = np.array(record["per_query"]["per_query"][metric])
        low, high = _numpy_band(values, seed=0, n_resamples=10_000)
        assert float(point["value"]) == pytest.approx(record["scores"][metric], abs=5e-7)
        assert float(point["ci95_low"]) == pytest.approx(low, abs=5e-7)
        assert float(point["ci95_high"]) == pytest.approx(high, abs=5e-7)
        assert float(point["ci95_low"]) <= float(point["value"]) <= float(point["ci95_high"])
        widths.append(high - low)
    assert min(widths) >= 0 and max(widths) > 0.05  # real bands, not points

    # Another seed gives other resamples (so the seed is what makes the bands reproducible).
    from vembed_bench.report.collect import read_result_file
    from vembed_bench.report.curves import recall_curve

    result = read_result_file(FIXTURES / "text-base-5362cc99/faq_en/test.json").result
    values = np.array(result.per_query.per_query["recall@5"])
    curve = recall_curve("text-base", result, "recall", [1, 5, 10], seed=7, n_resamples=2_000)
    assert (curve.low[1], curve.high[1]) == pytest.approx(_numpy_band(values, 7, 2_000), abs=5e-7)
    # On a graded metric (no ties between resampled means), seeds 7 and 8 give other bands.
    ndcg = [recall_curve("text-base", result, "ndcg", [5, 10], seed=seed, n_resamples=200)
            for seed in (7, 8)]
    assert ndcg[0].low != ndcg[1].low and ndcg[0].values == ndcg[1].values


def test_legend_is_outside_the_axes_and_near_identical_curves_differ_in_style(tmp_path, monkeypatch):
    from vembed_bench.report import plots as plots_module
    from vembed_bench.report.curves import Curve

    drawn = {}

    def inspect(figure, path):
        figure.canvas.draw()
        (ax,) = figure.axes
        drawn["axes"] = ax.get_window_extent()
        drawn["legend"] = ax.get_legend().get_window_extent()
        drawn["lines"] = [(line.get_color(), line.get_linestyle(), line.get_marker()) for line in ax.get_lines()]
        drawn["bands"] = len(ax.collections)
        return path

    monkeypatch.setattr(plots_module, "_save", inspect)
    ks = (1, 5, 10, 100)
    curves = [
        Curve(f"model {i}", ks, tuple(0.5 + 0.1 * j + 1e-4 * i for j in range(4)),
              tuple(0.45 + 0.1 * j for j in range(4)), tuple(0.55 + 0.1 * j for j in range(4)))
        for i in range(7)
    ]
    plots_module.recall_curves("seven near-identical curves", "recall", curves, tmp_path / "x.png")
    assert drawn["legend"].x0 >= drawn["axes"].x1  # right of the axes: it hides no curve
    assert len(drawn["lines"]) == 7 and drawn["bands"] == 7
    styles = drawn["lines"]
    assert len(set(styles)) == 7
    for a, b in zip(styles, styles[1:]):  # neighbours differ in colour, line style and marker
        assert a[0] != b[0] and a[1] != b[1] and a[2] != b[2]
