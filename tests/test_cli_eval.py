"""`vembed-bench eval` as a user meets it: sweeps, JSON, stage messages, verbosity, usage errors.

Runs the real entry point (:func:`vembed_bench.cli.main`) in-process on tiny random
sentence-transformers folders, so each case costs a model load of milliseconds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import write_beir
from tests.train_helpers import tiny_st_folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("models")
    folders = []
    for name, seed in (("a", 1), ("b", 2)):
        folders.append(tiny_st_folder(root / f"build-{name}", seed=seed).rename(root / name))
    return folders


@pytest.fixture
def task(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(12)]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 3} number {i}"} for i in range(6)]
    return write_beir(tmp_path / "toy", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(6)]})


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run the installed entry point in-process: (exit code, stdout, stderr)."""
    from vembed_bench.cli import main

    argv = sys.argv
    sys.argv = ["vembed-bench", *args]
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def _common(tmp_path: Path) -> list[str]:
    return ["--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]


def test_version(capsys):
    from vembed_bench import __version__

    code, out, _ = cli(capsys, "--version")
    assert code == 0 and out.strip() == f"vembed-bench {__version__}"


def test_single_pair_prints_stages_on_stderr_and_the_split_in_the_header(capsys, tmp_path, models, task):
    code, out, err = cli(capsys, "eval", "-t", str(task), "-m", str(models[0]), *_common(tmp_path))
    assert code == 0, err
    assert "toy [test]" in out and "result file:" in out
    for stage in ("loading model", "encoding 6 queries", "encoding 12 documents", "searching 6 queries"):
        assert stage in err, err
    code, out, err = cli(capsys, "-q", "eval", "-t", str(task), "-m", str(models[0]), "--overwrite-strategy",
                         "always", *_common(tmp_path))
    assert code == 0 and err == "" and "toy [test]" in out
    code, out, err = cli(capsys, "eval", "-t", str(task), "-m", str(models[0]), "--json", *_common(tmp_path))
    record = json.loads(out)
    assert code == 0 and record["status"] == "reused" and record["task"] == "toy"
    assert record["main_score"] == pytest.approx(json.loads(Path(record["path"]).read_text())["scores"]["ndcg@10"])


def test_sweep_json_table_failed_pair_and_exit_code(capsys, tmp_path, models, task):
    broken = write_beir(tmp_path / "broken", [{"_id": "d1", "text": "x"}], [{"_id": "q1", "text": "y"}],
                        {"test": [("q1", "d1", 1)]})
    (broken / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "\xff"}\n')
    code, out, err = cli(capsys, "eval", "-m", f"{models[0]},{models[1]}", "-t", str(task), "-t", str(broken),
                         "--json", *_common(tmp_path))
    assert code == 1, err
    record = json.loads(out)
    assert record["models"] == ["a", "b"] and record["tasks"] == ["toy", "broken"]
    assert record["failed"] == 2 and all(record["table"][m]["toy"] is not None for m in ("a", "b"))
    assert record["model_loads"] == {"a": 1, "b": 1}
    statuses = {(p["model"], p["task"]): p["status"] for p in record["pairs"]}
    assert statuses == {("a", "toy"): "computed", ("a", "broken"): "failed",
                        ("b", "toy"): "computed", ("b", "broken"): "failed"}
    assert len(list((tmp_path / "res").rglob("*.json"))) == 2


def test_sweep_table_and_model_list_file(capsys, tmp_path, models, task):
    listing = tmp_path / "models.txt"
    listing.write_text(f"# two tiny models\n{models[0]}\n\n{models[1]}  # the second\n")
    code, out, err = cli(capsys, "eval", "-m", f"@{listing}", "-t", str(task), *_common(tmp_path))
    assert code == 0, err
    assert "main scores" in out and "toy" in out
    assert err.count("done ") == 2


def test_dry_run_lists_pairs_and_writes_nothing(capsys, tmp_path, models, task):
    code, out, err = cli(capsys, "eval", "-m", str(models[0]), "-m", str(models[1]), "-t", str(task), "--dry-run",
                         *_common(tmp_path))
    assert code == 0, err
    assert err.count("planned") == 2 and "would run" in err
    assert not (tmp_path / "res").exists()


def test_tasks_json(capsys):
    code, out, _ = cli(capsys, "tasks", "--json")
    record = json.loads(out)
    assert code == 0 and "python_faq" in {t["name"] for t in record["tasks"]}
    assert "vembed-core" in {b["name"] for b in record["benchmarks"]}


@pytest.mark.parametrize("args, expected, usage", [
    (["eval", "--bogus"], "No such option", True),
    (["evaluate"], "No such command", True),
    (["eval", "-t", "python_faq", "-m", "x", "--limit", "abc"], "'--limit'", True),
    (["eval", "-t", "python_faq"], "missing --model", False),
    (["eval", "-m", "x"], "missing --task", False),
    (["eval", "-t", "python_faq", "-m", "x", "--limit", "0"], "--limit 0 must be a positive number", False),
    (["eval", "-t", "python_faq", "-m", "x", "--limit", "-5"], "--limit -5 must be a positive number", False),
    (["eval", "-t", "python_faq", "-m", "x", "--grid", "-3"], "--grid -3 must be 0", False),
    (["eval", "-t", "python_faq", "-m", "x", "--overwrite-strategy", "maybe"], "--overwrite-strategy 'maybe'",
     False),
    (["eval", "-b", "nope", "-m", "x"], "unknown benchmark 'nope'", False),
    (["eval", "-t", "python_faq", "-m", "/no/such/model"], "model path /no/such/model does not exist", False),
    (["eval", "-t", "python_faq", "-m", "a", "-m", "b", "--model-name", "x"], "--model-name given 1 times", False),
    (["eval", "-t", "python_faq", "-m", "@/no/such/list.txt"], "--model @/no/such/list.txt", False),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, args, expected, usage):
    code, out, err = cli(capsys, *args, *(["--results-dir", str(tmp_path / "res")] if args[0] == "eval"
                                          and "--bogus" not in args else []))
    lines = err.strip().splitlines()
    assert code == 2, err
    if usage:
        assert len(lines) == 2 and lines[0].startswith("Usage: vembed-bench") and lines[1].startswith("error: ")
    else:
        assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[-1], err
    assert not (tmp_path / "res").exists()
