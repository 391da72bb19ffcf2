"""The result record and its identity, checked value by value against hand-written expectations.

A Result is the file every printed number comes from, and its settings decide which runs may
replace each other; so the round trip, the file name, the schema-1 upgrade and every settings
label are pinned here to literal values (computed by hand or with hashlib/json directly).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from vembed_bench.errors import VembedError
from vembed_bench.evaluation import identity
from vembed_bench.evaluation.identity import expected_dtype, gpu_present, settings_key, settings_of
from vembed_bench.metrics import MetricScores
from vembed_bench.options import EncoderOptions, EvalOptions
from vembed_bench.results import SCHEMA_VERSION, Result, load_result, result_path, slug


def make_result(**changes) -> Result:
    per_query = MetricScores(
        query_ids=["q1", "q2"],
        per_query={"hit@1": np.array([1.0, 0.0]), "ndcg@10": np.array([0.5, 0.25])},
        aggregate={"hit@1": 0.5, "ndcg@10": 0.375},
    )
    fields = dict(
        task="tiny task", split="test", model="org/model:v1", main_metric="ndcg@10",
        scores={"hit@1": 0.5, "ndcg@10": 0.375}, per_query=per_query, k_values=[1, 10],
        metric_definitions={"hit@k": "h", "ndcg@k": "n"},
        model_info={"weights_fingerprint": "abcdef0123456789", "fingerprint": "ffffffffffff"},
        task_info={"n_queries": 2}, search_info={"backend": "numpy"}, embedding_dim=8, seed=3,
        limit=None, timings={"encode": 1.5}, environment={"python": "3.11"},
    )
    fields.update(changes)
    return Result(**fields)


def test_round_trip_through_the_file_keeps_every_field(tmp_path):
    result = make_result(settings={"limit": None, "dim": 64}, settings_key="dim64",
                         cache={"hits": 1}, created_at="2025-01-01T00:00:00+00:00")
    path = result.save(tmp_path / "a" / "r.json")
    assert path == tmp_path / "a" / "r.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["schema_version"] == SCHEMA_VERSION
    assert record["per_query"] == {"query_ids": ["q1", "q2"], "aggregate": {"hit@1": 0.5, "ndcg@10": 0.375},
                                   "per_query": {"hit@1": [1.0, 0.0], "ndcg@10": [0.5, 0.25]}}
    back = load_result(path)
    assert back.to_dict() == result.to_dict()
    assert back.main_score == 0.375
    assert back.settings == {"limit": None, "dim": 64} and back.settings_key == "dim64"
    np.testing.assert_array_equal(back.per_query.per_query["ndcg@10"], [0.5, 0.25])


@pytest.mark.parametrize(("limit", "seed", "settings", "key"), [
    (4, 7, {"limit": 4, "seed": 7}, "limit4-seed7"),
    (None, 7, {"limit": None, "seed": None}, ""),
])
def test_schema_1_records_get_settings_from_limit_and_seed(tmp_path, limit, seed, settings, key):
    record = make_result(limit=limit, seed=seed).to_dict()
    for name in ("settings", "settings_key"):
        record.pop(name)
    record["schema_version"] = 1
    path = tmp_path / "old.json"
    path.write_text(json.dumps(record))
    old = load_result(path)
    assert old.settings == settings and old.settings_key == key
    assert old.schema_version == SCHEMA_VERSION


def test_a_record_without_a_schema_version_is_read_as_schema_1():
    record = make_result(limit=6, seed=2).to_dict()
    for name in ("settings", "settings_key", "schema_version"):
        record.pop(name)
    result = Result.from_dict(record)
    assert result.settings == {"limit": 6, "seed": 2} and result.settings_key == "limit6-seed2"
    assert result.schema_version == SCHEMA_VERSION


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"cannot read result file \(Expecting property name"),
    (json.dumps({"schema_version": 3}), r"unsupported result schema 3$"),
    (json.dumps({"task": "t"}), r"unsupported result schema None$"),
])
def test_unreadable_result_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VembedError, match=f"^{re.escape(str(path))}: {message}"):
        load_result(path)
    with pytest.raises(VembedError, match=r"missing\.json: cannot read result file \(\[Errno 2\]"):
        load_result(tmp_path / "missing.json")


def test_weights_fingerprint_falls_back_to_the_model_fingerprint_then_nofp():
    assert make_result().weights_fingerprint == "abcdef0123456789"
    assert make_result(model_info={"fingerprint": "1234567890ab"}).weights_fingerprint == "1234567890ab"
    assert make_result(model_info={"weights_fingerprint": "", "fingerprint": "99"}).weights_fingerprint == "99"
    assert make_result(model_info={}).weights_fingerprint == "nofp"


def test_default_path_is_model_weights8_task_split_settings(tmp_path):
    result = make_result(settings_key="limit20-seed0")
    assert result.default_path(tmp_path) == tmp_path / "org_model_v1-abcdef01" / "tiny_task" / "test.limit20-seed0.json"
    assert make_result().default_path(tmp_path) == tmp_path / "org_model_v1-abcdef01" / "tiny_task" / "test.json"
    assert make_result(model_info={}).default_path(tmp_path).parent.parent.name == "org_model_v1-nofp"


def test_result_path_and_slug():
    assert result_path(Path("r"), "m", "", "t", "dev") == Path("r/m-nofp/t/dev.json")
    assert result_path(Path("r"), "a b", "0123456789", "x/y", "te st", "k 1") == Path("r/a_b-01234567/x_y/te_st.k_1.json")
    assert slug("  __a..b-c__ ") == "a..b-c"
    assert slug("a/\\b  c") == "a_b_c"
    assert slug("///") == "unnamed" and slug("") == "unnamed"
    assert slug(12) == "12"
    assert slug("Xbox/One_X") == "Xbox_One_X"  # case kept; only separators replaced or stripped


def test_to_pandas_one_row_per_metric_with_the_main_one_marked():
    frame = make_result().to_pandas()
    assert frame.to_dict("records") == [
        {"task": "tiny task", "split": "test", "model": "org/model:v1", "metric": "hit@1", "value": 0.5,
         "main": False},
        {"task": "tiny task", "split": "test", "model": "org/model:v1", "metric": "ndcg@10", "value": 0.375,
         "main": True},
    ]
    per_query = make_result().per_query_frame()
    assert per_query.index.name == "query_id" and list(per_query.index) == ["q1", "q2"]
    assert per_query.to_dict("list") == {"hit@1": [1.0, 0.0], "ndcg@10": [0.5, 0.25]}


# --- identity: which settings make two runs different --------------------------------------


def _sha(value, length=6) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:length]


CPU = EncoderOptions(device="cpu")


def test_settings_of_the_canonical_run():
    assert settings_of(EvalOptions(), CPU, limit=None) == {
        "limit": None, "seed": None, "dim": None, "index": "flat", "maxsim": None,
        "candidate_depth": None, "dtype": "float32", "encoder": {},
    }
    assert settings_key(settings_of(EvalOptions(seed=9), CPU, limit=None)) == ""


def test_settings_of_records_every_option_that_moves_a_number():
    options = EvalOptions(seed=4, index="hnsw", maxsim="faiss", candidate_depth=64)
    encoder = EncoderOptions(device="cpu", pooling="mean", max_length=128, query_prompt="q: ", dtype="fp16",
                             num_workers=3, name="label", show_progress=False)
    settings = settings_of(options, encoder, limit=20, multi_vector=True, dim=256)
    assert settings == {
        "limit": 20, "seed": 4, "dim": 256, "index": "hnsw", "maxsim": "faiss", "candidate_depth": 64,
        "dtype": "float16",
        # Sorted by name; runtime fields (name, device, workers, progress) and dtype left out.
        "encoder": {"max_length": 128, "pooling": "mean", "query_prompt": "q: "},
    }
    assert list(settings["encoder"]) == ["max_length", "pooling", "query_prompt"]
    assert settings_key(settings) == f"s-{_sha(settings, 12)}"  # the readable label is over 80 characters
    settings.update(dim=None, encoder={"max_length": 128, "query_prompt": "q: "})
    assert settings_key(settings) == f"limit20-seed4_index-hnsw_maxsim-faiss64_fp16_max_length128_query_prompt-{_sha('q: ')}"


def test_settings_of_single_vector_and_exact_maxsim_ignore_multi_vector_options():
    single = settings_of(EvalOptions(maxsim="faiss", candidate_depth=64), CPU, limit=None)
    assert single["maxsim"] is None and single["candidate_depth"] is None
    exact = settings_of(EvalOptions(maxsim="exact", candidate_depth=64), CPU, limit=None, multi_vector=True)
    assert exact["maxsim"] == "exact" and exact["candidate_depth"] is None
    assert settings_key(exact) == ""


def test_reported_dtype_wins_over_the_expected_one():
    assert settings_of(EvalOptions(), CPU, limit=None, dtype="bfloat16")["dtype"] == "bfloat16"
    assert settings_key(settings_of(EvalOptions(), CPU, limit=None, dtype="bfloat16")) == "bf16"


@pytest.mark.parametrize(("changed", "label"), [
    ({"limit": 20, "seed": 5}, "limit20-seed5"),
    ({"limit": 20, "seed": None}, "limit20-seed0"),
    ({"limit": 0, "seed": 5}, ""),
    ({"dim": 64}, "dim64"),
    ({"dim": 0}, ""),
    ({"index": "ivf"}, "index-ivf"),
    ({"index": "IVF1024,PQ16x8np"}, "index-IVF1024-PQ16x8np"),
    ({"index": "IVF1024,PQ16x8fsr"}, f"index-{_sha('IVF1024,PQ16x8fsr')}"),  # 17 characters: hashed
    ({"index": "IVF4096,Flat,nprobe=32"}, f"index-{_sha('IVF4096,Flat,nprobe=32')}"),
    ({"maxsim": "faiss", "candidate_depth": 32}, "maxsim-faiss32"),
    ({"maxsim": "exact"}, ""),
    ({"dtype": "bfloat16"}, "bf16"),
    ({"dtype": "float16"}, "fp16"),
    ({"dtype": "float64"}, "float64"),
    ({"encoder": {"pooling": "cls"}}, "pooling-cls"),
    ({"encoder": {"max_length": 64}}, "max_length64"),
    ({"encoder": {"normalize": True}}, "normalize"),
    ({"encoder": {"normalize": False}}, "no-normalize"),
    ({"encoder": {"instruction": "Find"}}, f"instruction-{_sha('Find')}"),
    ({"encoder": {"query_prompt": ""}}, f"query_prompt-{_sha('')}"),
    ({"encoder": {"pooling": ""}}, f"pooling-{_sha('')}"),
    ({"encoder": {"pooling": None}}, f"pooling-{_sha(None)}"),
    ({"encoder": {"extra": {"a": 1}}}, f"extra-{_sha({'a': 1})}"),
    ({"encoder": {"extra": [1, 2]}}, f"extra-{_sha([1, 2])}"),
    ({"encoder": {"tokenizer": Path("/models/tok")}}, f"tokenizer-{_sha('/models/tok')}"),  # hashed as str
    ({"encoder": {"scale": 0.5}}, "scale-0-5"),
    ({"encoder": {"pooling": "mean", "attention": "bidirectional"}}, "attention-bidirectional_pooling-mean"),
])
def test_settings_key_labels(changed, label):
    base = {"limit": None, "seed": None, "dim": None, "index": "flat", "maxsim": None,
            "candidate_depth": None, "dtype": "float32", "encoder": {}}
    assert settings_key({**base, **changed}) == label


def test_settings_key_of_sparse_settings_uses_the_defaults():
    assert settings_key({}) == ""
    assert settings_key({"limit": 3}) == "limit3-seed0"
    assert settings_key({"encoder": None}) == ""


def test_long_labels_become_a_hash_of_all_settings():
    settings = {"limit": None, "dim": None, "index": "flat", "dtype": "float32",
                "encoder": {"pooling": "p" * 70, "padding_side": "left"}}
    label = "padding_side-left_pooling-" + "p" * 70
    assert len(label) > 80
    assert settings_key(settings) == f"s-{_sha(settings, 12)}"
    settings["encoder"]["pooling"] = "p" * (80 - len("padding_side-left_pooling-"))
    assert settings_key(settings) == "padding_side-left_pooling-" + "p" * 54  # exactly 80: kept


def test_expected_dtype_follows_the_device():
    assert expected_dtype(EncoderOptions(device="cpu")) == "float32"
    assert expected_dtype(EncoderOptions(device="cuda:1")) == "bfloat16"
    assert expected_dtype(EncoderOptions(device="cuda", dtype="fp32")) == "float32"
    assert expected_dtype(EncoderOptions(device="cpu", dtype="half")) == "float16"
    guess = "bfloat16" if glob.glob("/dev/nvidia[0-9]*") else "float32"
    assert expected_dtype(EncoderOptions()) == guess


def test_gpu_present_reads_the_device_nodes(tmp_path, monkeypatch):
    assert gpu_present() == bool(glob.glob("/dev/nvidia[0-9]*"))
    # The rule itself, on a fake /dev: a numbered /dev/nvidiaN node means a GPU, nvidiactl alone not.
    monkeypatch.setattr(identity, "Path", lambda path: tmp_path / str(path).lstrip("/"))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").write_text("")
    assert gpu_present() is False
    (tmp_path / "dev" / "nvidia0").write_text("")
    assert gpu_present() is True


def test_without_a_device_the_dtype_follows_the_gpu_guess(monkeypatch):
    monkeypatch.setattr(identity, "gpu_present", lambda: True)
    assert expected_dtype(EncoderOptions()) == "bfloat16"
    assert expected_dtype(EncoderOptions(device="cpu")) == "float32"
    monkeypatch.setattr(identity, "gpu_present", lambda: False)
    assert expected_dtype(EncoderOptions()) == "float32"
