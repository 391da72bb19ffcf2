"""CLI behaviour that needs no model: fast help without torch, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

CHECK_NO_HEAVY_IMPORTS = """
import sys
from typer.testing import CliRunner
from vembed_bench.cli import app
runner = CliRunner()
for args in (["--help"], ["eval", "--help"], ["tradeoffs", "--help"], ["tasks", "--help"], ["demo", "--help"],
             ["tasks"]):
    out = runner.invoke(app, args)
    assert out.exit_code == 0, (args, out.output)
heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "faiss", "mteb", "ray")
               if m in sys.modules)
print("HEAVY:", heavy)
"""


def test_help_and_tasks_do_not_import_heavy_libraries():
    out = subprocess.run([sys.executable, "-c", CHECK_NO_HEAVY_IMPORTS], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: []" in out.stdout


def run_cli(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vembed_bench.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["eval", "--task", "no_such_task", "--model", "x"], "error: unknown task 'no_such_task'"),
        (["eval", "--task", "python_faq", "--model", "x", "--k", "a,b"], "error: --k 'a,b'"),
        (["eval", "--task", "python_faq", "--model", "x", "--cache", "maybe"], "error: --cache 'maybe'"),
        (["eval", "--task", "python_faq", "--model", "x", "--main-metric", "ndcg@7"], "error: main metric 'ndcg@7'"),
        (["eval", "--task", "python_faq", "--model", "x", "--ray-workers", "2"], "error: --ray-workers applies"),
        (["eval", "--task", "python_faq", "--model", "x", "--ray", "--cache", "off"], "error: --ray writes"),
        (["eval", "--task", "python_faq", "--model", "x", "--device", "cpu,cuda:0"], "error: --device cpu,cuda:0 mixes"),
    ],
)
def test_user_errors_are_one_line_with_exit_code_2(args, expected, tmp_path):
    out = run_cli(*args, "--results-dir", str(tmp_path / "results"))
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().startswith(expected), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not (tmp_path / "results").exists()


def test_tasks_lists_the_shipped_card():
    out = run_cli("tasks")
    assert out.returncode == 0
    assert "python_faq" in out.stdout and "ndcg@10" in out.stdout
