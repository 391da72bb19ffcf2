"""Nothing computed is lost: runs killed with SIGKILL resume to the same numbers, and two runs
sharing one cache and one results folder both succeed.

Every run is a real process executing ``vembed-bench`` (``vembed_bench.cli.main``), forked from a
helper that imported torch once (:class:`tests.fault_helpers.Zygote`), so that a kill is a real
``kill -9`` of a process in the middle of its work and costs no import time. A run is killed
only after it has written work to disk (a number of cache shards or checkpoints drawn from a
seeded generator), either right then or while its next file is half-written (a temporary file
of an atomic write exists), never on a timer. The references are a clean,
uninterrupted run of the same command (kill trials) and an independent computation of the score
(concurrent runs).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_beir
from tests.fault_helpers import Zygote, independent_ndcg, kill_when, message_lines, warning_lines

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists() or not hasattr(__import__("os"), "fork"),
                                reason="needs fork() and /proc (Linux)")

SHARD = 16
N_DOCS = 768  # 48 cache shards of documents
N_QUERIES = 32  # two shards of queries, encoded first
SEEDS = (0, 1, 2)
MID_WRITE = (False, True, True)
"""Per seed: killed right after a shard is complete, or while a later one is being written."""


@pytest.fixture(scope="module")
def zygote():
    pytest.importorskip("sentence_transformers")
    helper = Zygote()
    yield helper
    helper.close()


@pytest.fixture(scope="module")
def model(zygote, tmp_path_factory) -> Path:  # the zygote imports meanwhile
    from tests.train_helpers import tiny_st_folder

    return tiny_st_folder(tmp_path_factory.mktemp("tiny"))


def _words(rng: np.random.Generator, n: int) -> str:
    vocabulary = ("apple river stone cloud paper green music window tiger lamp orange silver forest coffee "
                  "bridge rocket garden planet mirror violin").split()
    return " ".join(rng.choice(vocabulary, n))


def _task(folder: Path, n_docs: int, n_queries: int) -> Path:
    """Short random texts: each query shares a word with its document."""
    rng = np.random.default_rng(3)
    docs = [_words(rng, 6) for _ in range(n_docs)]
    step = n_docs // n_queries
    queries = [f"{docs[i * step].split()[0]} {_words(rng, 3)}" for i in range(n_queries)]
    return write_beir(folder, [{"_id": f"d{i}", "text": t} for i, t in enumerate(docs)],
                      [{"_id": f"q{i}", "text": t} for i, t in enumerate(queries)],
                      {"test": [(f"q{i}", f"d{i * step}", 1) for i in range(n_queries)]})


@pytest.fixture(scope="module")
def big_task(tmp_path_factory) -> Path:
    return _task(tmp_path_factory.mktemp("big") / "big", N_DOCS, N_QUERIES)


def _eval_args(task: Path, model: Path, cache: Path, results: Path, *more: str) -> list[str]:
    return ["eval", "-t", str(task), "-m", str(model), "--cache-dir", str(cache), "--results-dir", str(results),
            "--device", "cpu", "--no-progress", *more]


def _result(results: Path) -> dict:
    (path,) = results.rglob("test.json")
    return json.loads(path.read_text())


def _sidecars(cache: Path) -> set[str]:
    """The shards of unfinished entries that a resume may trust (a sidecar is written after its data)."""
    return {p.name for p in cache.glob("embeddings/*/*/shard-*.json")}


def _entry_files(cache: Path) -> dict[str, bytes]:
    return {p.relative_to(cache).as_posix(): p.read_bytes() for p in cache.glob("embeddings/*/*/embeddings.npy")}


# -- an encode killed at random points -----------------------------------------------------------------
@pytest.fixture(scope="module")
def clean_encode(zygote, model, big_task, tmp_path_factory) -> Path:
    """The uninterrupted run every killed one is compared with."""
    root = tmp_path_factory.mktemp("clean")
    log = root / "log.txt"
    code = zygote.run(_eval_args(big_task, model, root / "cache", root / "res"), cwd=root, log=log, shard_size=SHARD)
    assert code == 0, log.read_text()
    return root


@pytest.mark.parametrize("seed", SEEDS)
def test_an_encode_killed_anywhere_resumes_to_the_same_result(seed, zygote, model, big_task, clean_encode, tmp_path):
    target = random.Random(seed).randint(3, N_DOCS // SHARD - 6)  # 3+: document shards (queries have 2)
    mid_write = MID_WRITE[seed]
    cache, results = tmp_path / "cache", tmp_path / "res"
    args = _eval_args(big_task, model, cache, results)
    pid = zygote.start(args, cwd=tmp_path, log=tmp_path / "killed.txt", shard_size=SHARD)
    kill_when(pid, lambda: len(_sidecars(cache)) >= target and (
        not mid_write or any(cache.glob("embeddings/*/*/.*.tmp"))))  # a shard's file half-written
    assert zygote.wait(pid) == -9, (tmp_path / "killed.txt").read_text()
    assert not results.exists()  # killed before the end: no result file, half-written or other
    on_disk = _sidecars(cache)
    finished = len(list(cache.glob("embeddings/*/*/meta.json")))  # entries complete when killed
    assert finished == 2 or len(on_disk) >= target  # sidecars only accumulate until an entry is done

    log = tmp_path / "resumed.txt"
    assert zygote.run(["-v", *args], cwd=tmp_path, log=log, shard_size=SHARD) == 0, log.read_text()
    text = log.read_text()
    assert "Traceback" not in text
    resumed = {f"{name}.json" for name in re.findall(r"resumed shard (shard-\d+)", text)}
    assert resumed == on_disk  # every finished shard was reused, none encoded twice
    for line in warning_lines(text):  # only a shard whose data was written but not its sidecar
        assert re.search(r"shard (\d+): shard-0*\1\.json is missing", line), line
    got, clean = _result(results), _result(clean_encode / "res")
    assert got["scores"] == clean["scores"] and got["per_query"] == clean["per_query"]
    assert got["cache"] == {"policy": "use", "hits": finished, "misses": 2 - finished}
    assert _entry_files(cache) == _entry_files(clean_encode / "cache")  # the same bytes as an uninterrupted encode
    assert not list(cache.rglob("*.tmp")) and not list(cache.rglob("shard-*"))


# -- a training run killed at random points ---------------------------------------------------------------
STEPS = 12
SAVE_EVERY = 2


@pytest.fixture(scope="module")
def recipe(model, tmp_path_factory) -> Path:
    import yaml

    folder = tmp_path_factory.mktemp("recipe")
    topics = ("lists", "dicts", "sets", "tuples")
    rows = [{"query": f"question {i} about {topics[i % 4]}", "positive": f"answer {i}: use {topics[i % 4]}"}
            for i in range(STEPS * 4)]  # batch size 4: STEPS steps in one epoch
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "output_dir": str(folder / "runs"),
        "model": {"path": str(model), "max_length": 32},
        "data": {"train": "pairs.jsonl"},
        "training": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "save_every": SAVE_EVERY, "keep_checkpoints": 2,
                     "seed": 1, "logger": "none", "bf16": False},
    }))
    return path


def _train(zygote: Zygote, recipe: Path, out: Path, log: Path, *more: str) -> int:
    return zygote.start(["train", str(recipe), "--set", f"output_dir={out}", "--no-progress", *more],
                        cwd=out.parent, log=log)


def _weights(run: Path) -> dict:
    from safetensors.numpy import load_file

    (path,) = (run / "model").rglob("model.safetensors")
    return load_file(str(path))


@pytest.fixture(scope="module")
def clean_training(zygote, recipe, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean-train")
    log = root / "log.txt"
    assert zygote.wait(_train(zygote, recipe, root / "runs", log)) == 0, log.read_text()
    return root / "runs" / "tiny"


@pytest.mark.parametrize("seed", SEEDS[:2])
def test_a_training_run_killed_anywhere_resumes_to_the_same_weights(seed, zygote, recipe, clean_training, tmp_path):
    target = SAVE_EVERY * random.Random(100 + seed).randint(1, STEPS // SAVE_EVERY - 2)
    mid_write = MID_WRITE[seed]
    out = tmp_path / "runs"
    pid = _train(zygote, recipe, out, tmp_path / "killed.txt")
    checkpoints = out / "tiny" / "checkpoints"
    kill_when(pid, lambda: (checkpoints / f"step-{target:07d}" / "state.json").exists() and (
        not mid_write or any(checkpoints.glob("step-*.tmp"))))  # the next checkpoint half-written
    assert zygote.wait(pid) == -9, (tmp_path / "killed.txt").read_text()

    log = tmp_path / "resumed.txt"
    assert zygote.wait(_train(zygote, recipe, out, log, "--resume")) == 0, log.read_text()
    assert "Traceback" not in log.read_text() and all(
        "cut short by a crash" in line for line in warning_lines(log.read_text()))
    rows = [json.loads(line) for line in (out / "tiny" / "train_log.jsonl").read_text().splitlines()]
    clean_rows = [json.loads(line) for line in (clean_training / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))  # each step logged once
    assert [r["loss"] for r in rows] == [r["loss"] for r in clean_rows]
    got, clean = _weights(out / "tiny"), _weights(clean_training)
    assert got.keys() == clean.keys()
    for name in clean:
        assert np.array_equal(got[name], clean[name]), name
    assert not list((out / "tiny").rglob("*.tmp"))


# -- two evaluations at once on one cache and one results folder -------------------------------------
def test_two_concurrent_evaluations_share_the_cache_and_the_results_folder(zygote, model, tmp_path):
    task = _task(tmp_path / "mid", 8 * SHARD, N_QUERIES)  # long enough for the two runs to overlap
    cache, results, go = tmp_path / "cache", tmp_path / "res", tmp_path / "go"
    args = _eval_args(task, model, cache, results)
    pids = [zygote.start(args, cwd=tmp_path, log=tmp_path / f"run{i}.txt", shard_size=SHARD, start_after=go)
            for i in range(2)]
    go.touch()  # both start now
    codes = [zygote.wait(pid) for pid in pids]
    logs = [(tmp_path / f"run{i}.txt").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    for text in logs:
        assert "Traceback" not in text and not warning_lines(text) and not [
            line for line in message_lines(text) if line.startswith("error")], text
    (path,) = results.rglob("*.json")  # one result file: the pair's, complete and valid
    stored = json.loads(path.read_text())
    assert stored["scores"]["ndcg@10"] == pytest.approx(independent_ndcg(model, task), abs=1e-6)
    assert not list(tmp_path.rglob("*.tmp")) and not list(cache.rglob("shard-*"))

    log = tmp_path / "third.txt"
    third = zygote.run([*args, "--overwrite-strategy", "always"], cwd=tmp_path, log=log, shard_size=SHARD)
    assert third == 0 and not warning_lines(log.read_text()), log.read_text()  # every cache file verified
    again = json.loads(path.read_text())
    assert again["cache"] == {"policy": "use", "hits": 2, "misses": 0}
    assert again["scores"] == stored["scores"] and again["per_query"] == stored["per_query"]
