"""Part 3: faiss on the GPU, recorded as skipped unless someone made faiss importable there.

faiss is not on the GPU image, and it cannot be carried: the faiss-gpu wheel for Python 3.12
is about 135 MB (the working tree plus carried files may hold 64 MiB per call) and is built
against CUDA 12, while the machine's torch and driver are CUDA 13.
"""

from __future__ import annotations

from common import Part

REASON = (
    "faiss is not installed on the GPU image and cannot be carried: the faiss-gpu wheel "
    "(faiss-gpu-cu12) is about 135 MB, over the 64 MiB a call may carry, and is built for "
    "CUDA 12 while this machine runs CUDA 13"
)


def body(part: Part):
    try:
        import faiss
    except ImportError:
        return "skipped", f"**skipped**: {REASON}.\n", {"reason": REASON}
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    note = (
        f"faiss {faiss.__version__} is importable here ({gpus} GPU(s) visible to it) but this "
        "script does not measure it; compare with `benchmarks/bench_search.py`."
    )
    return "skipped", f"**skipped**: {note}\n", {"version": faiss.__version__, "gpus": gpus}


if __name__ == "__main__":
    Part("faiss_gpu").run(body)
