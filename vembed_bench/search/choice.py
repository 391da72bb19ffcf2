"""Which backend ``auto`` searches with on this machine, and why (recorded in each result).

In order:

1. an approximate index (``hnsw``, ``ivf``, a factory string) needs faiss;
2. faiss with GPU support and a visible GPU: faiss on the GPU(s);
3. CUDA through torch (faiss without GPU support): torch on the GPU;
4. on the CPU, faiss and numpy are both exact with the same tie rule, and
   which is faster depends on the BLAS each links. faiss-cpu wheels bundle
   their own OpenBLAS, which on some Intel AVX-512 CPUs runs sgemm at about
   0.15 of the machine's bound while numpy's reaches about 0.43 (unless
   ``OPENBLAS_CORETYPE`` is set). So both are timed once on the same small
   exact search (:data:`CALIBRATION_SHAPE`, :data:`CALIBRATION_REPEATS`
   interleaved pairs, a fraction of a second) on one thread -- the kernel
   choice is what differs, and one thread keeps other processes on a shared
   machine from deciding the outcome through OpenMP's sensitivity to
   oversubscribed cores -- and faiss
   is kept unless numpy is at least :data:`SWITCH_RATIO` times faster in
   *every* pair -- a margin and a rule that a passing load spike does not
   meet, so the choice does not flip between runs. The answer is
   remembered per machine (CPU model, cores, library and BLAS versions, the
   thread and core-type variables) in ``<cache>/search/backend-choice.json``,
   so later runs only read it.

Only speed depends on this choice: exact backends return the same ranking
under the shared tie rule (up to last-bit differences between BLAS libraries).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from vembed_bench.atomic import write_json
from vembed_bench.cache_home import default_cache_dir

log = logging.getLogger(__name__)

SWITCH_RATIO = 1.5
"""numpy replaces faiss on the CPU only when it is at least this many times faster."""
CALIBRATION_SHAPE = (2048, 4096, 256)
"""(queries, corpus rows, dimension) of the calibration search: 4.3 GFLOP of matmul, with as many queries as faiss
    multiplies at once (its small-batch path is slower and not what large evaluations use)."""
CALIBRATION_K = 10
CALIBRATION_REPEATS = 3
MEMO_FILE = Path("search") / "backend-choice.json"
BUILT_IN = ("faiss", "torch", "numpy")
_ENVIRONMENT = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@dataclass(frozen=True)
class AutoChoice:
    """The backend ``auto`` stands for, the reason in words, and the timings it rests on."""

    backend: str
    reason: str
    seconds: dict[str, list[float]] = field(default_factory=dict)
    """Calibration: seconds of each interleaved repetition per backend (empty when nothing was timed)."""
    remembered: bool = False
    """The calibration was read from the memo file rather than run now."""

    def record(self) -> dict[str, Any]:
        """What a result's ``search_info["auto_choice"]`` holds."""
        out: dict[str, Any] = {"backend": self.backend, "reason": self.reason}
        if self.seconds:
            out["calibration_seconds"] = dict(self.seconds)
            out["calibration_shape"] = list(CALIBRATION_SHAPE)
            out["remembered"] = self.remembered
        return out


def decide(
    available: Sequence[str], exact: bool, faiss_gpus: int, cpu_choice: Callable[[], AutoChoice]
) -> AutoChoice:
    """The ``auto`` rule (module docstring) on what is available here.

    ``cpu_choice`` is asked only when faiss and numpy compete on the CPU.
    """
    if not available:
        return AutoChoice("numpy", "no other backend is available")
    if not exact:
        name = "faiss" if "faiss" in available else available[0]
        return AutoChoice(name, "approximate indexes are built with faiss")
    first = available[0]
    if first not in BUILT_IN:
        return AutoChoice(first, f"{first} is registered before the built-in backends")
    if "faiss" in available and faiss_gpus > 0:
        return AutoChoice("faiss", f"faiss has GPU support and sees {faiss_gpus} GPU(s)")
    if "torch" in available:
        return AutoChoice("torch", "CUDA is available through torch (faiss has no GPU support here)")
    if "faiss" in available and "numpy" in available:
        return cpu_choice()
    return AutoChoice(first, f"{first} is the only exact backend available here")


def decide_cpu(seconds: Mapping[str, Sequence[float]]) -> AutoChoice:
    """faiss or numpy on the CPU from their calibration times (seconds of each interleaved
    repetition): numpy only if it was at least :data:`SWITCH_RATIO` times faster in every one."""
    faiss_s, numpy_s = [float(t) for t in seconds["faiss"]], [float(t) for t in seconds["numpy"]]
    ratios = [f / n for f, n in zip(faiss_s, numpy_s)]
    shape = "x".join(str(n) for n in CALIBRATION_SHAPE)
    timed = (f"(best of {len(ratios)}: faiss {min(faiss_s):.3f} s, numpy {min(numpy_s):.3f} s; "
             f"faiss/numpy time ratio {min(ratios):.2f} to {max(ratios):.2f})")
    record = {"faiss": faiss_s, "numpy": numpy_s}
    if ratios and min(ratios) >= SWITCH_RATIO:
        return AutoChoice(
            "numpy",
            f"numpy searched at least {min(ratios):.1f}x faster than faiss in a {shape} calibration {timed}: "
            "faiss's bundled BLAS is slow on this CPU (setting OPENBLAS_CORETYPE may fix it)",
            record,
        )
    return AutoChoice(
        "faiss",
        f"numpy was not {SWITCH_RATIO}x faster than faiss in every repetition of a {shape} calibration {timed}",
        record,
    )


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """What the calibration's answer depends on; a change of any of them calibrates again."""
    facts: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "environment": {name: os.environ[name] for name in _ENVIRONMENT if name in os.environ},
    }
    try:
        import faiss

        facts["faiss"] = faiss.__version__
        facts["faiss_threads"] = int(faiss.omp_get_max_threads())
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        facts["blas"] = sorted(
            f"{pool.get('internal_api')} {pool.get('version')} {pool.get('architecture')} x{pool.get('num_threads')}"
            for pool in threadpool_info()
            if pool.get("user_api") == "blas"
        )
    except ImportError:
        pass
    return facts


def machine_key(facts: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def calibrate(backends: Mapping[str, Any]) -> dict[str, list[float]]:
    """Seconds of each backend on one seeded exact search, per repetition (after a warm-up),
    on one thread, the backends interleaved so that a change of machine load hits both."""
    nq, n, d = CALIBRATION_SHAPE
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((n, d), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    queries = corpus[rng.choice(n, nq, replace=False)] + 0.1 * rng.standard_normal((nq, d), dtype=np.float32)
    times: dict[str, list[float]] = {name: [] for name in backends}
    with one_thread():
        for backend in backends.values():
            backend.search(queries[:64], corpus[:4096], CALIBRATION_K)
        for _ in range(CALIBRATION_REPEATS):
            for name, backend in backends.items():
                start = time.perf_counter()
                backend.search(queries, corpus, CALIBRATION_K)
                times[name].append(round(time.perf_counter() - start, 5))
    return times


@contextmanager
def one_thread() -> Iterator[None]:
    """BLAS libraries (numpy's and faiss's own) and faiss's OpenMP on one thread, restored after."""
    faiss = None
    try:
        import faiss
    except ImportError:
        pass
    before = faiss.omp_get_max_threads() if faiss is not None else None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only the BLAS thread count stays as it is
        threadpool_limits = None
    try:
        if faiss is not None:
            faiss.omp_set_num_threads(1)
        if threadpool_limits is not None:
            with threadpool_limits(limits=1, user_api="blas"):
                yield
        else:
            yield
    finally:
        if faiss is not None:
            faiss.omp_set_num_threads(before)


def nvidia_or_amd_gpu_present() -> bool:
    """Whether a GPU device node exists: a torch-free hint that asking torch for CUDA is worth it."""
    dev = Path("/dev")
    return any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists()


def remembered_cpu_choice(
    measure: Callable[[], Mapping[str, Sequence[float]]],
    memo_path: Path | None = None,
    facts: Mapping[str, Any] | None = None,
) -> AutoChoice:
    """:func:`decide_cpu` on this machine's calibration, measured once and remembered.

    A memo file that cannot be read is ignored, one that cannot be written only
    means calibrating again next time.
    """
    path = memo_path if memo_path is not None else default_cache_dir() / MEMO_FILE
    facts = dict(facts if facts is not None else machine_facts())
    key = machine_key(facts)
    memo = _read_memo(path)
    entry = memo.get(key)
    seconds = entry.get("seconds") if isinstance(entry, dict) else None
    if _valid_seconds(seconds):
        return _remembered(decide_cpu(seconds))
    seconds = {name: list(times) for name, times in measure().items()}
    choice = decide_cpu(seconds)
    memo[key] = {"backend": choice.backend, "seconds": seconds, "machine": facts,
                 "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        write_json(path, memo)
    except OSError as err:
        log.debug("could not remember the search backend choice in %s: %s", path, err)
    return choice


def _remembered(choice: AutoChoice) -> AutoChoice:
    return AutoChoice(choice.backend, choice.reason, choice.seconds, remembered=True)


def _valid_seconds(seconds: Any) -> bool:
    def times(value: Any) -> bool:
        return (isinstance(value, list) and bool(value) and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in value))

    return isinstance(seconds, dict) and times(seconds.get("faiss")) and times(seconds.get("numpy")) \
        and len(seconds["faiss"]) == len(seconds["numpy"])


def _read_memo(path: Path) -> dict[str, Any]:
    try:
        memo = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return memo if isinstance(memo, dict) else {}

