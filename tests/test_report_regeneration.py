"""The committed leaderboards are exactly what the generator writes from their results.

``leaderboards/`` is rebuilt from ``leaderboards/results`` in a temporary copy with
the command the Makefile runs, and every file is compared byte for byte with the
committed one, as is the set of files: a page edited by hand, a stale file, or a
number that is not written at a fixed precision fails here. Without matplotlib the
pages cannot match (they link the plots), so only the CSV and LaTeX tables are compared.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from vembed_bench.report.build import MANIFEST, write_leaderboards
from vembed_bench.report.plots import matplotlib_available

COMMITTED = REPO / "leaderboards"
FIXTURES = REPO / "tests" / "data" / "results"


def generated_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` except the result files it is built from."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder).parts[0] != "results"
    }


def test_committed_leaderboards_regenerate_byte_for_byte(tmp_path):
    copy = tmp_path / "leaderboards"
    shutil.copytree(COMMITTED / "results", copy / "results")
    done = subprocess.run(
        [sys.executable, "-m", "vembed_bench.cli", "leaderboard", "leaderboards/results",
         "--out", "leaderboards"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    fresh, committed = generated_files(copy), generated_files(COMMITTED)
    if not matplotlib_available():  # pages link plots: only the tables can match
        keep = lambda name: name.endswith((".csv", ".tex")) and not name.startswith("plots/")  # noqa: E731
        fresh = {n: b for n, b in fresh.items() if keep(n)}
        committed = {n: b for n, b in committed.items() if keep(n)}
    hint = "regenerate: vembed-bench leaderboard leaderboards/results --out leaderboards"
    assert sorted(fresh) == sorted(committed), hint
    differ = [name for name in fresh if fresh[name] != committed[name]]
    assert not differ, f"{differ} differ from the committed files; {hint}"


def test_files_the_results_no_longer_give_are_removed_and_others_kept(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "results")
    out = tmp_path / "lb"
    first = write_leaderboards([tmp_path / "results"], out, plots=False, html=False, n_resamples=200)
    (out / "tasks" / "notes.md").write_text("mine\n")  # not written by the generator
    listed = (out / MANIFEST).read_text().splitlines()
    assert listed == sorted(p.relative_to(out).as_posix() for p in first)
    for folder in ("clip-b32-ac33dec4", "vit-small-8fbcd33b"):  # the only products_i2i results
        shutil.rmtree(tmp_path / "results" / folder / "products_i2i")
    second = write_leaderboards([tmp_path / "results"], out, plots=False, html=False, n_resamples=200)
    gone = {p.relative_to(out).as_posix() for p in first} - {p.relative_to(out).as_posix() for p in second}
    assert gone == {f"tasks/products_i2i-test{s}" for s in (".md", ".csv", ".tex")}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert on_disk == {p.relative_to(out).as_posix() for p in second} | {MANIFEST, "tasks/notes.md"}
    # A manifest edited to point outside the folder deletes nothing there.
    outside = tmp_path / "keep.txt"
    outside.write_text("keep\n")
    (out / MANIFEST).write_text("../keep.txt\n")
    write_leaderboards([tmp_path / "results"], out, plots=False, html=False, n_resamples=200)
    assert outside.read_text() == "keep\n"
