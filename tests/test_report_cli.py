"""``vembed-bench leaderboard`` and ``vembed-bench compare`` end to end (no model, no torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

FIXTURES = REPO / "tests" / "data" / "results"
SMALL = FIXTURES / "text-small-dc3d9353" / "faq_en" / "test.json"
TUNED = (
    FIXTURES
    / "runs"
    / "text-small-faq"
    / "eval"
    / "fine_tuned"
    / "text-small-ft-fb51c191"
    / "faq_en"
    / "test.json"
)
SAMPLED = FIXTURES / "sampled" / "text-small-dc3d9353" / "faq_en" / "test.json"

HELP_IMPORTS = """
import sys
from typer.testing import CliRunner
from vembed_bench.cli import app
for args in (["leaderboard", "--help"], ["compare", "--help"]):
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, (args, out.output)
heavy = ("matplotlib", "numpy", "torch", "pandas", "vembed_bench.report.build")
loaded = sorted(m for m in heavy if m in sys.modules)
print("LOADED:", loaded)
"""


def run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vembed_bench.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_help_loads_no_report_code():
    out = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert "LOADED: []" in out.stdout


def test_leaderboard_command_writes_the_folder_with_suites_from_the_command_line(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "results")
    out = run_cli(
        "leaderboard",
        tmp_path / "results",
        "--out",
        tmp_path / "lb",
        "--no-plots",
        "--suite",
        "faq-only=faq_en",
        "--resamples",
        "2000",
    )
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout
    readme = (tmp_path / "lb" / "README.md").read_text()
    assert (tmp_path / "lb" / "report.html").is_file() and not (tmp_path / "lb" / "plots").exists()
    assert (
        "faq-only avg" in readme and "text-en avg" not in readme
    )  # --suite replaces the cards' suites
    faq = json.loads(SMALL.read_text())["scores"]["ndcg@10"]
    row = next(line for line in readme.splitlines() if line.startswith("| text-small |"))
    assert row.rstrip(" |").endswith(
        f"{100 * faq:.2f}"
    )  # the suite average of one task is its score
    assert "2,000 resamples" in (tmp_path / "lb" / "tasks" / "faq_en-test.md").read_text()


def test_compare_prints_and_writes_the_same_table(tmp_path):
    out = run_cli(
        "compare", SMALL, TUNED, "--out", tmp_path / "cmp.md", "--resamples", "2000", "--seed", "3"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (tmp_path / "cmp.md").read_text()
    base, tuned = json.loads(SMALL.read_text())["scores"], json.loads(TUNED.read_text())["scores"]
    row = next(line for line in out.stdout.splitlines() if line.startswith("| **ndcg@10** |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == [f"{100 * base['ndcg@10']:.2f}", f"{100 * tuned['ndcg@10']:.2f}"]
    assert float(cells[3].split()[0]) == pytest.approx(
        100 * (tuned["ndcg@10"] - base["ndcg@10"]), abs=0.006
    )
    assert "seed 3" in out.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["compare", SMALL, SAMPLED],
            "error: cannot compare text-small and text-small on faq_en: different data",
        ),
        (["leaderboard", "no/such/folder"], "error: "),
        (
            ["leaderboard", FIXTURES, "--suite", "nonsense"],
            "error: --suite 'nonsense' must look like NAME=TASK1,TASK2",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, expected, tmp_path):
    out = run_cli(*args, "--out", tmp_path / "out")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith(expected), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
