"""``vembed-bench leaderboard`` and ``vembed-bench compare`` end to end (no model, no torch)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO
from markdown_tables import md_table

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




CLIP_FAQ = "clip-b32-ac33dec4/faq_en/test.json"


def _newer_schema(path):
    record = json.loads(path.read_text())
    record["schema_version"] = 99
    path.write_text(json.dumps(record))
    return "result schema 99 was written by a newer vembed-bench; this one (0.1.0) reads schemas 1, 2: upgrade vembed-bench"


def _truncated(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # what a crash or a full disk leaves
    return "not valid JSON"


@pytest.mark.parametrize("damage", [_newer_schema, _truncated], ids=["newer-schema", "truncated-json"])
def test_an_unreadable_result_file_is_skipped_with_one_warning_and_the_rest_rendered(tmp_path, damage):
    shutil.copytree(FIXTURES, tmp_path / "results")
    bad = tmp_path / "results" / CLIP_FAQ
    message = damage(bad)
    out = run_cli("leaderboard", tmp_path / "results", "--out", tmp_path / "lb", "--no-plots", "--no-html",
                  "--resamples", "200")
    assert out.returncode == 0, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"warning: skipped {bad}") and message in line, line
    # faq_en is ranked from the other six result files; clip-b32's other results are all there.
    faq = (tmp_path / "lb" / "tasks" / "faq_en-test.md").read_text()
    ranked = [r["model"] for r in md_table(faq, "| # |")]
    assert len(ranked) == 6 and "clip-b32" not in ranked and "text-base" in ranked
    docs = (tmp_path / "lb" / "tasks" / "docs_en-test.md").read_text()
    assert [r["model"] for r in md_table(docs, "## Not comparable")] == ["clip-b32"]
    assert (tmp_path / "lb" / "tasks" / "products_i2i-test.md").is_file()
    # Named directly, the same file is refused with the same reason, and nothing is written.
    named = run_cli("leaderboard", bad, "--out", tmp_path / "named", "--no-plots")
    assert named.returncode == 2 and len(named.stderr.strip().splitlines()) == 1
    assert named.stderr.startswith(f"error: {bad}") and message in named.stderr
    assert not (tmp_path / "named").exists()


def test_an_empty_results_folder_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    (tmp_path / "empty").mkdir()
    out = run_cli("leaderboard", tmp_path / "empty", "--out", tmp_path / "lb")
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: no result files found under {tmp_path / 'empty'}"
    assert not (tmp_path / "lb").exists()
    # An earlier leaderboard in OUT is left exactly as it was (no temporary files either).
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "README.md").write_text("earlier\n")
    assert run_cli("leaderboard", tmp_path / "empty", "--out", tmp_path / "lb").returncode == 2
    assert [p.name for p in (tmp_path / "lb").iterdir()] == ["README.md"]
    assert (tmp_path / "lb" / "README.md").read_text() == "earlier\n"


def test_results_on_other_data_under_one_task_name_are_kept_apart_with_the_reason(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "results")
    moved = tmp_path / "results" / "clip-b32-ac33dec4" / "faq_en" / "test.json"
    record = json.loads(moved.read_text())
    original = record["task_info"]["data_fingerprint"]
    record["task_info"]["data_fingerprint"] = "0123456789abcdef" * 4  # same name, other data
    moved.write_text(json.dumps(record))
    out = run_cli("leaderboard", tmp_path / "results", "--out", tmp_path / "lb", "--no-plots", "--no-html",
                  "--resamples", "200")
    assert out.returncode == 0, out.stderr
    faq = (tmp_path / "lb" / "tasks" / "faq_en-test.md").read_text()
    assert "clip-b32" not in {r["model"] for r in md_table(faq, "| # |")}
    (row,) = md_table(faq, "| model | main metric | score | why it is not in the table |")
    assert row["model"] == "clip-b32"
    assert row["why it is not in the table"] == f"different data (fingerprint 01234567 vs {original[:8]})"
    assert row["score"] == f"{100 * record['scores']['ndcg@10']:.2f}"
    overview = (tmp_path / "lb" / "README.md").read_text()
    reasons = {(r["model"], r["reason"]) for r in md_table(overview, "| task | split | model |")}
    assert ("clip-b32", f"different data (fingerprint 01234567 vs {original[:8]})") in reasons
