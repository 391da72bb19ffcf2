"""``--batch-size auto``: halving on out-of-memory, the memo of known-good sizes, the CPU RAM formula,
and what a run records (without changing a result's identity or the embedding cache).

The out-of-memory cases fake the *device*, not the code under test: an encoder whose batches raise
``torch.cuda.OutOfMemoryError`` above a size, driven through the real ``encode_items``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_beir
from tests.fault_helpers import run_cli
from tests.train_helpers import tiny_st_folder
from vembed_bench.data.types import Item
from vembed_bench.encoders import batching
from vembed_bench.errors import VembedError

torch = pytest.importorskip("torch")


class SmallGpu:
    """An encoder on a device that runs out of memory for batches of more than ``fits`` items.

    Each vector is a function of its item alone (seeded by the text's hash), so any batching gives
    the same rows; ``returned`` lists the items of every call that completed, in call order."""

    name = "small-gpu"
    device = "cuda"
    dtype = "bfloat16"
    max_length = 128

    def __init__(self, fits: int, *, error: type[BaseException] | None = None, message: str = "") -> None:
        self.fits = fits
        self.error = error or torch.cuda.OutOfMemoryError
        self.message = message or "CUDA out of memory. Tried to allocate 2.00 GiB"
        self.returned: list[str] = []
        self.sizes: list[int] = []

    def fingerprint(self) -> str:
        return "f" * 64

    def describe(self) -> dict:
        return {"type": "fake", "dtype": self.dtype}

    def encode_queries(self, items, *, batch_size=32):
        return self.encode_documents(items, batch_size=batch_size)

    def encode_documents(self, items, *, batch_size=32):
        self.sizes.append(batch_size)
        rows = []
        for start in range(0, len(items), batch_size):
            batch = items[start:start + batch_size]
            if len(batch) > self.fits:
                raise self.error(self.message)
            rows.extend(_vector(item.text) for item in batch)
        self.returned.extend(item.id for item in items)
        return np.stack(rows)


def _vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def _items(n: int) -> list[Item]:
    return [Item(id=f"d{i}", text=f"document {i}") for i in range(n)]


@pytest.fixture(autouse=True)
def _cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("VEMBED_CACHE_DIR", str(tmp_path / "home"))


def _encode(encoder, items, batch_size):
    from vembed_bench.evaluation.stages import VectorMemo, encode_items

    return encode_items(encoder, VectorMemo(), items, "document", False, batch_size)


# -- halving on out-of-memory -----------------------------------------------------------------------


@pytest.mark.parametrize("fits", [100, 64, 1, 37])
def test_halves_to_the_largest_size_that_fits_and_encodes_each_item_once_in_order(fits):
    items = _items(300)
    gpu = SmallGpu(fits)
    vectors = _encode(gpu, items, "auto")
    ladder = [batching.GPU_START >> k for k in range(batching.GPU_START.bit_length())]
    expected = max(size for size in ladder if size <= fits)
    tuner = batching.tuner_for(gpu, "auto")
    assert tuner.size == expected and tuner.source == "probe"
    assert tuner.halvings == ladder.index(expected)
    assert gpu.returned == [item.id for item in items]  # one completed call: nothing lost or repeated
    assert gpu.sizes == [size for size in ladder if size >= expected]
    fixed = _encode(SmallGpu(fits=10_000), items, 7)
    np.testing.assert_array_equal(vectors, fixed)
    np.testing.assert_array_equal(vectors, np.stack([_vector(item.text) for item in items]))


def test_the_size_found_is_remembered_and_the_next_run_starts_there():
    _encode(SmallGpu(fits=100), _items(300), "auto")
    again = SmallGpu(fits=100)  # a new process's encoder: same weights, dtype, length and device
    _encode(again, _items(300), "auto")
    assert again.sizes == [64]
    tuner = batching.tuner_for(again, "auto")
    assert tuner.source == "memo" and tuner.halvings == 0
    memo = json.loads((Path(batching.memo_path())).read_text())
    key = batching.memo_key("f" * 64, "bfloat16", 128, "cuda")
    assert memo["entries"][key]["batch_size"] == 64


def test_a_later_larger_batch_that_does_not_fit_halves_again_and_updates_the_memo():
    gpu = SmallGpu(fits=100)
    _encode(gpu, _items(300), "auto")
    gpu.fits = 20  # the device has less free memory now (another process took some)
    vectors = _encode(gpu, _items(50), "auto")
    assert batching.tuner_for(gpu, "auto").size == 16
    assert vectors.shape == (50, 8) and gpu.returned[-50:] == [f"d{i}" for i in range(50)]
    key = batching.memo_key("f" * 64, "bfloat16", 128, "cuda")
    assert batching.recall(batching.memo_path(), key) == 16


def test_mps_out_of_memory_text_is_retried_and_other_errors_are_not():
    mps = SmallGpu(fits=50, error=RuntimeError, message="MPS backend out of memory (MPS allocated: 9 GB)")
    mps.device = "mps"
    _encode(mps, _items(60), "auto")
    assert batching.tuner_for(mps, "auto").size == 32
    broken = SmallGpu(fits=50, error=RuntimeError, message="expected scalar type Float but found Half")
    with pytest.raises(RuntimeError, match="expected scalar type"):
        _encode(broken, _items(60), "auto")
    assert broken.sizes == [batching.GPU_START]


def test_a_fixed_batch_size_is_never_changed():
    gpu = SmallGpu(fits=10)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _encode(gpu, _items(30), 16)
    assert gpu.sizes == [16]
    assert not batching.memo_path().exists()


def test_a_model_that_does_not_fit_one_item_at_a_time_is_one_clean_error():
    gpu = SmallGpu(fits=0)
    with pytest.raises(VembedError, match="small-gpu does not fit in the device's memory even one item"):
        _encode(gpu, _items(5), "auto")
    assert gpu.sizes[-1] == 1 and gpu.returned == []


def test_reset_runs_before_each_retry():
    calls: list[str] = []
    tuner = batching.BatchTuner(8, "probe")

    def step(size: int) -> int:
        calls.append(f"step{size}")
        if size > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return size

    assert tuner.run(step, reset=lambda: calls.append("reset")) == 2
    assert calls == ["step8", "reset", "step4", "reset", "step2"]


# -- the memo ---------------------------------------------------------------------------------------


def test_memo_round_trip_and_keys(tmp_path):
    path = tmp_path / "memo.json"
    key = batching.memo_key("abc", "bfloat16", 512, "NVIDIA H200|150754820096")
    assert batching.recall(path, key) is None
    batching.remember(path, key, 48)
    assert batching.recall(path, key) == 48
    for other in (batching.memo_key("abd", "bfloat16", 512, "NVIDIA H200|150754820096"),
                  batching.memo_key("abc", "float32", 512, "NVIDIA H200|150754820096"),
                  batching.memo_key("abc", "bfloat16", 256, "NVIDIA H200|150754820096"),
                  batching.memo_key("abc", "bfloat16", 512, "NVIDIA A10G|23836098560")):
        assert batching.recall(path, other) is None
    batching.remember(path, other, 8)
    assert batching.recall(path, key) == 48 and batching.recall(path, other) == 8


@pytest.mark.parametrize("damage", ["{not json", '{"format": 1, "entries": []}', '["a list"]',
                                    '{"format": 99, "entries": {}}', ""])
def test_a_damaged_memo_is_ignored_with_a_warning_and_rewritten(tmp_path, caplog, damage):
    path = tmp_path / "memo.json"
    path.write_text(damage)
    key = batching.memo_key("abc", "bfloat16", 512, "cuda")
    with caplog.at_level(logging.WARNING, logger="vembed_bench.batching"):
        assert batching.recall(path, key) is None
    assert "damaged batch-size memo" in caplog.text and str(path) in caplog.text
    batching.remember(path, key, 32)
    assert json.loads(path.read_text())["entries"][key]["batch_size"] == 32


def test_an_entry_that_is_not_a_positive_int_is_not_trusted(tmp_path):
    path = tmp_path / "memo.json"
    path.write_text(json.dumps({"format": 1, "entries": {"k": {"batch_size": 0}, "j": {"batch_size": "64"}}}))
    assert batching.recall(path, "k") is None and batching.recall(path, "j") is None


# -- CPU: from the available RAM --------------------------------------------------------------------


def test_cpu_formula_against_hand_computed_sizes():
    # MiniLM-L6 (384 wide, 6 layers), 256 tokens, fp32: 4 * 256 * 384 * (6 + 16) = 8_650_752 bytes an item;
    # a quarter of 4 GiB holds 124 of them -> 64, the power of two below.
    assert batching.cpu_batch_size(384, 6, 256, "float32", available=4 << 30) == 64
    # bf16 halves the bytes: 248 -> 128.
    assert batching.cpu_batch_size(384, 6, 256, "bfloat16", available=4 << 30) == 128
    # BERT-large, 512 tokens: 4 * 512 * 1024 * 40 = 83_886_080 bytes; 2 GiB / 4 holds 6 -> raised to 8.
    assert batching.cpu_batch_size(1024, 24, 512, available=2 << 30) == 8
    # a tiny model on a big machine: capped at 256.
    assert batching.cpu_batch_size(32, 2, 32, available=64 << 30) == 256
    # training keeps every layer: 4 * 128 * 32 * 2 * 16 = 524_288 bytes; 64 MiB / 4 holds 32.
    assert batching.cpu_batch_size(32, 2, 128, training=True, available=64 << 20) == 32
    # the same model at inference: 4 * 128 * 32 * (2 + 16) = 294_912 bytes; 16 MiB holds 56 -> 32.
    assert batching.cpu_batch_size(32, 2, 128, available=64 << 20) == 32


def test_available_ram_reads_meminfo():
    text = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").is_file() else ""
    if "MemAvailable:" not in text:
        pytest.skip("no /proc/meminfo here")
    kib = int(next(line for line in text.splitlines() if line.startswith("MemAvailable:")).split()[1])
    assert abs(batching.available_ram() - kib * 1024) < 512 << 20  # other processes move it a little


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory) -> Path:
    return tiny_st_folder(tmp_path_factory.mktemp("tiny-st"), seed=3)


def test_cpu_auto_uses_the_models_shape_and_the_ram(tiny_st, monkeypatch):
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions

    encoder = load_encoder(str(tiny_st), EncoderOptions(device="cpu", show_progress=False))
    assert batching.model_shape(encoder.folder, encoder.max_length) == (32, 2, 32)
    monkeypatch.setattr(batching, "available_ram", lambda: 3 << 20)
    # 4 * 32 * 32 * (2 + 16) = 73_728 bytes an item; 3 MiB / 4 = 786_432 holds 10 -> 8.
    tuner = batching.tuner_for(encoder, "auto")
    assert (tuner.size, tuner.source) == (8, "cpu-ram")


def test_cpu_encode_batches_stay_narrow_however_much_ram_there_is(tiny_st, monkeypatch):
    """Wide CPU batches are slower (padding to the longest item, no GEMM gain): an encode takes
    at most CPU_ENCODE_CAP items, while a GradCache chunk keeps the RAM bound."""
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions

    encoder = load_encoder(str(tiny_st), EncoderOptions(device="cpu", show_progress=False))
    monkeypatch.setattr(batching, "available_ram", lambda: 64 << 30)
    assert batching.cpu_batch_size(32, 2, 32) == 256  # what the RAM alone would allow
    assert batching.tuner_for(encoder, "auto").size == batching.CPU_ENCODE_CAP == 16
    chunk = batching.new_tuner("auto", "cpu", key=None, shape=(32, 2, 32), dtype="float32",
                               training=True)
    assert chunk.size == 256


def test_auto_embeddings_equal_a_fixed_batch_of_4(tiny_st):
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.options import EncoderOptions

    items = [Item(id=f"d{i}", text=" ".join(["word"] * (i % 7 + 1)) + f" number {i}") for i in range(23)]
    options = EncoderOptions(device="cpu", show_progress=False)
    auto = _encode(load_encoder(str(tiny_st), options), items, "auto")
    fixed = _encode(load_encoder(str(tiny_st), options), items, 4)
    assert auto.shape == (23, 32)
    np.testing.assert_allclose(auto, fixed, atol=1e-5)


# -- through the command line -----------------------------------------------------------------------


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    run = run_cli(monkeypatch, capsys, *args)
    return run.code, run.out, run.err


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    corpus = [{"_id": f"d{i}", "text": f"document number {i} about topic {i % 3}"} for i in range(12)]
    queries = [{"_id": f"q{i}", "text": f"topic {i % 3} number {i}"} for i in range(6)]
    return write_beir(tmp_path / "toy", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(6)]})


def test_the_result_records_the_batch_size_which_changes_neither_identity_nor_cache(capsys, tmp_path, toy,
                                                                                    tiny_st, monkeypatch):
    monkeypatch.setattr(batching, "available_ram", lambda: 3 << 20)  # 8 items a batch, as computed above
    common = ["-t", str(toy), "-m", str(tiny_st), "--device", "cpu", "--json"]
    code, out, err = _cli(monkeypatch, capsys, "-v", "eval", *common, "--results-dir", str(tmp_path / "auto"),
                          "--cache-dir", str(tmp_path / "c1"))
    assert code == 0, err
    assert "batch size 8 (cpu-ram)" in err  # shown at -v
    auto_path = Path(json.loads(out)["path"])
    auto = json.loads(auto_path.read_text())
    assert auto["model_info"]["batching"] == {"batch_size": 8, "mode": "auto", "source": "cpu-ram", "halvings": 0}
    code, out, err = _cli(monkeypatch, capsys, "eval", *common, "--batch-size", "4", "--results-dir", str(tmp_path / "four"),
                          "--cache-dir", str(tmp_path / "c2"))
    assert code == 0, err
    four_path = Path(json.loads(out)["path"])
    four = json.loads(four_path.read_text())
    assert four["model_info"]["batching"] == {"batch_size": 4, "mode": "fixed", "source": "fixed", "halvings": 0}
    assert four["settings_key"] == auto["settings_key"] and four["settings"] == auto["settings"]
    assert four_path.relative_to(tmp_path / "four") == auto_path.relative_to(tmp_path / "auto")
    assert four["scores"] == pytest.approx(auto["scores"], abs=1e-9)
    # Another batch size reads the first run's embeddings (the batch size is not in the cache keys),
    # and their provenance says which batch size computed them.
    code, out, err = _cli(monkeypatch, capsys, "eval", *common, "--batch-size", "4", "--results-dir", str(tmp_path / "again"),
                          "--cache-dir", str(tmp_path / "c1"))
    again = json.loads(Path(json.loads(out)["path"]).read_text())
    assert code == 0 and again["cache"]["misses"] == 0
    assert again["model_info"]["batching"] == auto["model_info"]["batching"]


@pytest.mark.parametrize("value", ["0", "abc", "-3", "1.5"])
def test_a_bad_batch_size_is_one_line_and_exit_2(capsys, tmp_path, value, monkeypatch):
    code, _, err = _cli(monkeypatch, capsys, "eval", "-t", "python_faq", "-m", "x", "--batch-size", value,
                        "--results-dir", str(tmp_path / "res"))
    assert code == 2
    assert err.strip().splitlines() == [f"error: --batch-size {value} must be a positive integer or auto "
                                        "(picked from free memory)"]
    assert not (tmp_path / "res").exists()


def test_options_accept_auto_and_integers():
    from vembed_bench.options import EvalOptions

    assert EvalOptions().batch_size == "auto"
    assert EvalOptions(batch_size="AUTO").batch_size == "auto"
    assert EvalOptions(batch_size="12").batch_size == 12 and EvalOptions(batch_size=3).batch_size == 3
    for bad in (0, True, 2.0, None, "auto-ish"):
        with pytest.raises(VembedError, match="--batch-size"):
            EvalOptions(batch_size=bad)
