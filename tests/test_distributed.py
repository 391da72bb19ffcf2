"""Distributed encoding: a local Ray cluster (2 CPU workers) and a `cpu,cpu` device list encode the
missing cache shards, the driver writes them, and the run gives the single-process embeddings and
scores; a run interrupted after some shards resumes and encodes only the rest; a worker killed
mid-run is restarted by Ray and the run still matches.

The reference is the ordinary single-process run of the same tiny sentence-transformers model on
the same 100 queries x 300 documents (7 shards of 64 items: 2 of queries, 5 of documents)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_beir
from tests.test_multivector_cli import WORDS as COLBERT_WORDS
from tests.test_multivector_cli import colbert_dir  # noqa: F401 - a fixture
from tests.train_helpers import tiny_st_folder
from vembed_bench.cache import EmbeddingCache
from vembed_bench.errors import VembedError
from vembed_bench.evaluation import evaluate

SHARD = 64
N_QUERIES, N_DOCS = 100, 300
SHARDS = -(-N_QUERIES // SHARD) + -(-N_DOCS // SHARD)  # 2 + 5
WORDS = "cats purr rockets orbit bread yeast dogs bark stars shine night fuel sleep river stone".split()


@pytest.fixture(scope="module", autouse=True)
def small_shards():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vembed_bench.cache.DEFAULT_SHARD_SIZE", SHARD)
        yield


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_st_folder(tmp_path_factory.mktemp("st"), seed=5)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    rng = random.Random(0)
    corpus = [{"_id": f"d{i}", "title": "", "text": " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))}
              for i in range(N_DOCS)]
    queries = [{"_id": f"q{i}", "text": " ".join(rng.choices(WORDS, k=rng.randint(2, 5)))} for i in range(N_QUERIES)]
    qrels = [(f"q{i}", f"d{(7 * i) % N_DOCS}", 1) for i in range(N_QUERIES)]
    return write_beir(tmp_path_factory.mktemp("task") / "toy", corpus, queries, {"test": qrels})


def run(task: Path, model: Path, cache: Path, **options):
    return evaluate(str(task), str(model), cache_dir=cache, results_dir=None, show_progress=False,
                    k_values=[1, 10], **options)


def entries(cache: Path) -> dict[str, np.ndarray]:
    """Every complete cache entry, by its role, read back through the verifying cache."""
    store = EmbeddingCache(cache / "embeddings")
    found = {}
    for meta in (cache / "embeddings").glob("*/*/meta.json"):
        found[json.loads(meta.read_text())["info"]["role"]] = store.load(meta.parent.name)
    return found


@pytest.fixture(scope="module")
def reference(task, model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("single")
    result = run(task, model, cache, device="cpu")
    return result, entries(cache)


def assert_same_as(reference, result, cache: Path) -> None:
    expected, vectors = reference
    assert result.scores == expected.scores
    assert result.settings_key == expected.settings_key  # workers change no setting of the result
    assert result.per_query.to_dict() == expected.per_query.to_dict()
    found = entries(cache)
    assert sorted(found) == ["document", "query"]
    for role in found:
        assert found[role].shape == vectors[role].shape
        np.testing.assert_allclose(found[role], vectors[role], rtol=0, atol=1e-6)


def shard_records(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (cache / "embeddings").glob("*/*/shard-*.json")]


# -- the cache API the workers' shards go through -----------------------------------------------

def test_missing_shards_and_write_shard_under_each_policy(tmp_path):
    from vembed_bench.data.types import Item

    items = [Item(id=f"i{i}", text=f"t{i}") for i in range(10)]

    def vectors(chunk, shift=0.0):
        return np.array([[int(item.id[1:]) + shift, 1.0] for item in chunk], dtype=np.float32)

    def must_not_encode(chunk):
        raise AssertionError(f"encoded {len(chunk)} items although every shard was written")

    key = "ab" * 32
    use = EmbeddingCache(tmp_path, shard_size=4)
    assert use.missing_shards(key, items) == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    use.write_shard(key, 1, items, vectors(items[4:8]))
    assert use.missing_shards(key, items) == [(0, 0, 4), (2, 8, 10)]
    with pytest.raises(VembedError, match="has no shard 3"):
        use.write_shard(key, 3, items, vectors(items[:2]))
    with pytest.raises(VembedError, match="one row per item"):
        use.write_shard(key, 0, items, vectors(items[:3]))
    encoded = []
    out = use.get_or_compute(key, items, lambda chunk: encoded.append(len(chunk)) or vectors(chunk))
    assert encoded == [4, 2] and np.array_equal(out, vectors(items))  # shard 1 was resumed
    assert use.missing_shards(key, items) == []

    refresh = EmbeddingCache(tmp_path, "refresh", shard_size=4)  # the complete entry is encoded anew
    spans = refresh.missing_shards(key, items)
    assert spans == [(0, 0, 4), (1, 4, 8), (2, 8, 10)]
    for index, start, stop in spans:
        refresh.write_shard(key, index, items, vectors(items[start:stop], shift=0.5))
    assert refresh.missing_shards(key, items) == []
    assert np.array_equal(refresh.get_or_compute(key, items, must_not_encode), vectors(items, shift=0.5))

    with pytest.raises(VembedError, match="--cache off"):
        EmbeddingCache(tmp_path, "off").missing_shards(key, items)


# -- several devices, no Ray ------------------------------------------------------------------------

def test_a_device_list_encodes_like_one_device(task, model, reference, tmp_path):
    result = run(task, model, tmp_path, device="cpu,cpu")
    assert_same_as(reference, result, tmp_path)
    assert result.model_info["distributed_encode"] == {
        "backend": "devices", "workers": 2, "devices": ["cpu", "cpu"], "shards": SHARDS,
        "items": N_QUERIES + N_DOCS}
    assert result.model_info["device"] == "cpu"
    again = run(task, model, tmp_path, device="cpu,cpu")  # served by the cache: no workers at all
    assert again.cache["hits"] == 2 and "distributed_encode" not in again.model_info
    assert again.scores == reference[0].scores


# -- Ray --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ray_cluster():
    if importlib.util.find_spec("ray") is None:  # not importorskip: import_ray sets Ray up first
        pytest.skip("Ray is not installed (the [ray] extra)")
    from vembed_bench.distributed.ray_encode import import_ray

    ray = import_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_workers_encode_like_one_process(ray_cluster, task, model, reference, tmp_path):
    result = run(task, model, tmp_path, device="cpu", ray="local", ray_workers=2)
    assert_same_as(reference, result, tmp_path)
    assert result.model_info["distributed_encode"] == {
        "backend": "ray", "workers": 2, "worker_device": "cpu", "shards": SHARDS, "items": N_QUERIES + N_DOCS}
    assert result.timings["encode_distributed"] > 0


def test_an_interrupted_ray_run_resumes_from_the_written_shards(ray_cluster, task, model, reference, tmp_path,
                                                                monkeypatch):
    write = EmbeddingCache.write_shard
    calls = []

    def crash_after_three(self, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt  # the driver stops (Ctrl-C) with three shards written
        calls.append(args[1])
        return write(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingCache, "write_shard", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        run(task, model, tmp_path, device="cpu", ray="local", ray_workers=2)
    monkeypatch.setattr(EmbeddingCache, "write_shard", write)
    written = shard_records(tmp_path)
    assert len(written) == 3 and not list((tmp_path / "embeddings").glob("*/*/meta.json"))
    result = run(task, model, tmp_path, device="cpu", ray="local", ray_workers=2)
    assert_same_as(reference, result, tmp_path)
    done = result.model_info["distributed_encode"]
    assert done["shards"] == SHARDS - 3
    assert done["items"] == N_QUERIES + N_DOCS - sum(record["count"] for record in written)


def test_a_killed_ray_worker_is_restarted_and_the_run_matches(ray_cluster, task, model, reference, tmp_path,
                                                              monkeypatch):
    write = EmbeddingCache.write_shard
    killed = []

    def kill_a_worker_once(self, *args, **kwargs):
        if not killed:
            killed.extend(_kill_one("ShardActor"))
        return write(self, *args, **kwargs)

    monkeypatch.setattr(EmbeddingCache, "write_shard", kill_a_worker_once)
    result = run(task, model, tmp_path, device="cpu", ray="local", ray_workers=2)
    assert killed, "no Ray worker process was found to kill"
    assert_same_as(reference, result, tmp_path)
    assert result.model_info["distributed_encode"]["shards"] == SHARDS


def _kill_one(title: str) -> list[int]:
    """SIGKILL one process of this test's Ray cluster (a descendant of this process) whose command
    line (Ray sets it to the actor's class) names ``title``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if title in cmdline and _descends_from_me(int(entry.name)):
            os.kill(int(entry.name), signal.SIGKILL)
            return [int(entry.name)]
    return []


def _descends_from_me(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == os.getpid():
            return True
    return False


# -- the shards themselves, multi-vector ----------------------------------------------------------

def test_device_workers_write_the_shards_one_process_writes(colbert_dir, tmp_path):  # noqa: F811
    """ColBERT token matrices (ragged): the shards two `cpu` workers write hold what an interrupted
    single-process encode leaves, and `get_or_compute_multi` then only assembles the entry."""
    from vembed_bench.cache import cache_key
    from vembed_bench.data.types import Item
    from vembed_bench.distributed import EncodeJob, model_ref
    from vembed_bench.distributed.devices import DevicePool
    from vembed_bench.encoders.loader import load_multivector_encoder
    from vembed_bench.options import EncoderOptions

    rng = random.Random(1)
    items = [Item(id=f"d{i}", text=" ".join(rng.choices(COLBERT_WORDS, k=rng.randint(1, 9)))) for i in range(150)]
    options = EncoderOptions(device="cpu")
    encoder = load_multivector_encoder(str(colbert_dir), options)
    key = cache_key(encoder.fingerprint(), "document-multi", {}, items)
    expected = encoder.encode_documents_multi(items, batch_size=32)

    single = EmbeddingCache(tmp_path / "single")
    calls = []

    def encode_two_shards_then_stop(chunk):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(chunk))
        return encoder.encode_documents_multi(chunk, batch_size=32)

    with pytest.raises(KeyboardInterrupt):
        single.get_or_compute_multi(key, items, encode_two_shards_then_stop)

    workers = EmbeddingCache(tmp_path / "workers")
    job = EncodeJob(key, "document", items, multi=True)
    model = model_ref(str(colbert_dir), options, encoder, 32, multi_vector=True)
    with DevicePool(("cpu", "cpu")) as pool:
        done = pool(workers, model, [job])
        with pytest.raises(VembedError, match="has fingerprint .* the driver's has 0123456789ab"):
            pool(EmbeddingCache(tmp_path / "other"), replace(model, fingerprint="0123456789ab" * 4), [job])
    assert done == {"backend": "devices", "workers": 2, "devices": ["cpu", "cpu"], "shards": 3, "items": 150}
    assert workers.missing_shards(key, items, multi=True) == []
    for index in (0, 1):  # the single process wrote these two before it stopped
        for tail in (".tokens.npy", ".lengths.npy"):
            name = f"{key[:2]}/{key}/shard-{index:06d}{tail}"
            np.testing.assert_allclose(np.load(tmp_path / "workers" / name), np.load(tmp_path / "single" / name),
                                       rtol=0, atol=1e-6)
        sidecar = f"{key[:2]}/{key}/shard-{index:06d}.json"
        mine, theirs = (json.loads((tmp_path / d / sidecar).read_text()) for d in ("workers", "single"))
        assert {k: mine[k] for k in ("start", "count", "item_ids")} == \
            {k: theirs[k] for k in ("start", "count", "item_ids")} == \
            {"start": 64 * index, "count": 64, "item_ids": mine["item_ids"]}

    def must_not_encode(chunk):
        raise AssertionError(f"encoded {len(chunk)} items although every shard was written")

    assembled = workers.get_or_compute_multi(key, items, must_not_encode)
    assert len(assembled) == len(expected)
    for got, want in zip(assembled, expected):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
