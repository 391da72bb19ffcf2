"""Plots: written where the pages link them, byte-stable, and never able to change the Markdown."""

from __future__ import annotations

import re
import shutil
import sys

import pytest
from conftest import REPO

from vembed_bench.report.build import write_leaderboards

matplotlib = pytest.importorskip("matplotlib", reason="plots need matplotlib")

FIXTURES = REPO / "tests" / "data" / "results"


def snapshot(folder, suffixes=(".md", ".png", ".html")):
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

    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == [
        "docs_en-test.recall.png",
        "faq_en-test.matryoshka.png",
        "faq_en-test.recall.png",
        "products_i2i-test.recall.png",
        "run-text-small-faq.loss.png",
    ]
    linked = set()
    for page in out.rglob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
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
