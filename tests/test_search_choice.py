"""What ``auto`` searches with, decided from injected facts and timings (no test times anything).

The calibration itself (:func:`vembed_bench.search.choice.calibrate`) is only run where a
real evaluation asks for ``auto``; here its output is given, so each rule is checked alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.test_matryoshka import FixedEncoder
from tests.conftest import write_beir
from vembed_bench.search.choice import SWITCH_RATIO, AutoChoice, decide, decide_cpu, remembered_cpu_choice


def never_asked() -> AutoChoice:
    raise AssertionError("the CPU calibration must not be consulted here")


def test_numpy_replaces_faiss_only_when_faster_in_every_repetition():
    slow_faiss = {"faiss": [0.31, 0.30, 0.45], "numpy": [0.10, 0.11, 0.10]}
    choice = decide_cpu(slow_faiss)
    assert choice.backend == "numpy"
    assert "2.7x faster" in choice.reason and "OPENBLAS_CORETYPE" in choice.reason
    assert choice.record()["calibration_seconds"] == slow_faiss
    # One repetition where numpy was not SWITCH_RATIO times faster (a load spike, say): faiss stays.
    spike = {"faiss": [0.31, 0.30, 0.14], "numpy": [0.10, 0.11, 0.10]}
    assert decide_cpu(spike).backend == "faiss"
    # Exactly at the ratio switches; just below does not.
    assert decide_cpu({"faiss": [SWITCH_RATIO * 0.2], "numpy": [0.2]}).backend == "numpy"
    assert decide_cpu({"faiss": [SWITCH_RATIO * 0.2 - 1e-6], "numpy": [0.2]}).backend == "faiss"
    # Faster faiss: faiss, saying so.
    fast = decide_cpu({"faiss": [0.05, 0.05], "numpy": [0.1, 0.09]})
    assert fast.backend == "faiss" and "not 1.5x faster" in fast.reason


def test_gpus_and_index_come_before_the_cpu_calibration():
    cpu = lambda: AutoChoice("numpy", "calibrated")  # noqa: E731
    both = ["faiss", "numpy"]
    assert decide(both, True, 0, cpu).backend == "numpy"  # CPU only: the calibration decides
    gpu_faiss = decide(["faiss", "torch", "numpy"], True, 2, never_asked)
    assert gpu_faiss.backend == "faiss" and "2 GPU" in gpu_faiss.reason
    cuda = decide(["faiss", "torch", "numpy"], True, 0, never_asked)  # faiss-cpu next to CUDA torch
    assert cuda.backend == "torch" and "CUDA" in cuda.reason
    assert decide(["torch", "numpy"], True, 0, never_asked).backend == "torch"
    assert decide(["faiss", "numpy"], False, 0, never_asked).backend == "faiss"  # approximate index
    assert decide(["numpy"], True, 0, never_asked).backend == "numpy"
    assert decide(["mine", "faiss", "numpy"], True, 0, never_asked).backend == "mine"  # a plugin first


def test_the_calibration_is_remembered_per_machine(tmp_path: Path):
    memo = tmp_path / "search" / "backend-choice.json"
    calls = []

    def measure():
        calls.append(1)
        return {"faiss": [0.3, 0.3], "numpy": [0.1, 0.1]}

    machine = {"cpu": "Intel(R) Xeon(R) Platinum 8375C", "faiss": "1.15.1", "numpy": "2.4.6"}
    first = remembered_cpu_choice(measure, memo, machine)
    again = remembered_cpu_choice(measure, memo, machine)
    assert len(calls) == 1 and first.backend == again.backend == "numpy"
    assert not first.remembered and again.remembered and again.seconds == first.seconds
    stored = json.loads(memo.read_text())
    (entry,) = stored.values()
    assert entry["backend"] == "numpy" and entry["machine"] == machine
    # Another CPU, or the same one with another library or OPENBLAS_CORETYPE: measured again.
    remembered_cpu_choice(measure, memo, {**machine, "environment": {"OPENBLAS_CORETYPE": "Haswell"}})
    assert len(calls) == 2 and len(json.loads(memo.read_text())) == 2
    # A garbled memo or a hand-edited entry is not trusted: measured again, then rewritten.
    memo.write_text("{not json")
    assert remembered_cpu_choice(measure, memo, machine).backend == "numpy" and len(calls) == 3
    bad = {key: {**value, "seconds": {"faiss": ["fast"], "numpy": [0.1]}}
           for key, value in json.loads(memo.read_text()).items()}
    memo.write_text(json.dumps(bad))
    remembered_cpu_choice(measure, memo, machine)
    assert len(calls) == 4
    # An unwritable memo (a folder in its place) only means calibrating each time.
    blocked = tmp_path / "blocked.json"
    blocked.mkdir()
    assert remembered_cpu_choice(measure, blocked, machine).backend == "numpy" and len(calls) == 5


def test_the_result_records_what_auto_chose_and_why(tmp_path: Path):
    from vembed_bench.evaluation import evaluate
    from vembed_bench.search import auto_choice

    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(30)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(10)]
    task = write_beir(tmp_path / "t", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(10)]})
    result = evaluate(task, FixedEncoder(), cache="off", results_dir=tmp_path / "res", show_progress=False)
    info = json.loads(next((tmp_path / "res").rglob("test.json")).read_text())["search_info"]
    assert info["backend"] == info["auto_choice"]["backend"] == auto_choice().backend
    assert info["auto_choice"]["reason"] and result.search_info == info
    explicit = evaluate(task, FixedEncoder(), cache="off", results_dir=None, show_progress=False, backend="numpy")
    assert "auto_choice" not in explicit.search_info  # only auto explains itself
    assert np.isclose(explicit.main_score, result.main_score)
