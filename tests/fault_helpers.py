"""Helpers of the fuzz and fault suites: run the CLI, read its stderr, find leftovers, fork runs.

* :func:`run_cli` runs :func:`vembed_bench.cli.main` in this process, as a shell would;
* :func:`error_line` checks stderr holds exactly one ``error:`` line and no traceback;
* :func:`leftovers` lists what a refused command must not leave behind;
* :class:`Zygote` is a helper process that has imported torch and vembed_bench once and
  forks a fresh child for each ``vembed-bench`` command, so a kill trial costs no import
  time: each child is a real process running ``main()`` that can be killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

STAGE = re.compile(r"^(loading model |encoding \d+ |searching \d+ |embeddings of )")
PROGRESS = re.compile(r"\d+%\|.*\|")


@dataclass
class CliRun:
    code: int
    out: str
    err: str


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> CliRun:
    """``vembed-bench ARGS`` in this process: its exit code, stdout and stderr."""
    from vembed_bench.cli import main

    monkeypatch.setattr(sys, "argv", ["vembed-bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)


def message_lines(err: str) -> list[str]:
    """stderr without stage messages, progress bars and blank lines."""
    return [line for line in err.splitlines()
            if line.strip() and not STAGE.match(line) and not PROGRESS.search(line)]


def warning_lines(err: str) -> list[str]:
    return [line for line in message_lines(err) if line.startswith("warning: ")]


def error_line(err: str, *, warnings: int = 0, usage: bool = False) -> str:
    """The one ``error:`` line of ``err``; besides it only stage messages, progress bars,
    ``warnings`` warning lines and (for a usage error) the usage line may appear."""
    assert "Traceback" not in err, err
    lines = message_lines(err)
    assert len(warning_lines(err)) == warnings, err
    lines = [line for line in lines if not line.startswith("warning: ")]
    if usage:
        assert lines and lines[0].startswith("Usage: vembed-bench"), err
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def leftovers(root: Path, before: set[Path], *, ignore: Sequence[str] = ()) -> list[str]:
    """Paths under ``root`` that a refused command left: anything new outside ``ignore``
    (folders relative to ``root`` whose content may legitimately grow, such as the embedding
    cache), and temporary files of atomic writes anywhere."""
    now = snapshot(root)
    new = [p for p in now - before if not any(p.parts[:len(Path(i).parts)] == Path(i).parts for i in ignore)]
    temporary = [p for p in now if p.name.endswith(".tmp")]
    return sorted(str(p) for p in {*new, *temporary})


def snapshot(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


# -- an independent computation of the scores ---------------------------------------------------
def independent_ranks(model: Path, task: Path) -> np.ndarray:
    """The rank (1 = first) of each query's one relevant document, computed without vembed_bench:
    sentence-transformers' own encode, a numpy inner product, a stable sort."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model), device="cpu")
    corpus = [json.loads(line) for line in (task / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (task / "queries.jsonl").read_text().splitlines()]
    relevant = dict(line.split("\t")[:2] for line in (task / "qrels" / "test.tsv").read_text().splitlines()[1:])
    docs = st.encode([d["text"] for d in corpus], convert_to_numpy=True)
    asks = st.encode([q["text"] for q in queries], convert_to_numpy=True)
    order = np.argsort(-(asks @ docs.T), axis=1, kind="stable")
    ids = np.array([d["_id"] for d in corpus])
    return np.array([1 + list(ids[row]).index(relevant[q["_id"]]) for row, q in zip(order, queries)])


def independent_ndcg(model: Path, task: Path, k: int = 10) -> float:
    """nDCG@k with one relevant document (grade 1) per query: 1 / log2(rank + 1) within the top k."""
    ranks = independent_ranks(model, task)
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1), 0.0)))


# -- forked runs ------------------------------------------------------------------------------------

_ZYGOTE = r"""
import json, os, sys, time, traceback
import numpy, torch, sentence_transformers, transformers, safetensors.torch  # the slow imports, once
import vembed_bench.cli, vembed_bench.cache, vembed_bench.evaluation.runner, vembed_bench.train.flow
import vembed_bench.train.loop, vembed_bench.encoders.st_encoder, vembed_bench.search
print("ready", flush=True)


def child(job):
    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)  # not the zygote's command pipe
    fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if job.get("shard_size"):  # the shard size every EmbeddingCache of the child starts with
        from vembed_bench import cache as cache_module

        cache_module.DEFAULT_SHARD_SIZE = job["shard_size"]
    while job.get("start_after") and not os.path.exists(job["start_after"]):
        time.sleep(0.001)
    sys.argv = ["vembed-bench", *job["args"]]
    code = 0
    try:
        vembed_bench.cli.main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    job = json.loads(line)
    if job["op"] == "run":
        pid = os.fork()
        if pid == 0:
            try:
                child(job)
            finally:
                os._exit(1)
        print(pid, flush=True)
    elif job["op"] == "wait":
        _, status = os.waitpid(job["pid"], 0)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
"""


class Zygote:
    """A process that imported the heavy modules once and forks a child per command.

    The zygote itself never runs torch code, so its children start from a clean,
    fork-safe state (no thread pools yet) and pay no import time.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
        self._ready = False  # it imports while the caller does other work; the first command waits


    def _reply(self) -> str:
        line = self.process.stdout.readline()
        assert line, "the zygote process died"
        return line.strip()

    def _send(self, job: dict[str, Any]) -> str:
        if not self._ready:
            assert self._reply() == "ready"
            self._ready = True
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        return self._reply()

    def start(self, args: Sequence[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None,
              shard_size: int | None = None, start_after: Path | None = None) -> int:
        """Fork ``vembed-bench ARGS`` (stdout and stderr to ``log``); its pid."""
        return int(self._send({"op": "run", "args": [str(a) for a in args], "cwd": str(cwd), "log": str(log),
                               "env": env or {}, "shard_size": shard_size,
                               "start_after": str(start_after) if start_after else None}))

    def wait(self, pid: int) -> int:
        """The child's exit code, or minus the signal that killed it (as :mod:`subprocess` says)."""
        return int(self._send({"op": "wait", "pid": pid}))

    def run(self, args: Sequence[str], **kwargs: Any) -> int:
        return self.wait(self.start(args, **kwargs))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def kill_when(pid: int, ready: Callable[[], bool], *, timeout: float = 300.0) -> None:
    """SIGKILL ``pid`` as soon as ``ready()`` holds (polled: a state of its files, never a time).
    Fails the test if the process ends first or never gets there: it was not killed where meant."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert _running(pid), "the run ended before the point where it was to be killed"
        assert time.monotonic() < deadline, "the run never reached the point where it is to be killed"
        time.sleep(0.002)
    os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (an ended child stays a zombie until the zygote waits for it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
