"""GradCache, the loop (exact resume), and the train -> eval -> compare flow on a tiny random BERT."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import tiny_st_folder

from vembed_bench.errors import VembedError

TEXTS = [f"question number {i} about python {'lists' if i % 2 else 'dicts'}" for i in range(10)]
DOCS = [
    f"answer {i}: use a {'list' if i % 2 else 'dict'} comprehension, see item {i}"
    for i in range(10)
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_st_folder(tmp_path_factory.mktemp("tiny"), dropout=0.1)


def _model(folder, *, lora=False, double=True):
    from vembed_bench.train.model import build_model
    from vembed_bench.train.recipe import recipe_from_dict

    recipe = recipe_from_dict(
        {
            "name": "t",
            "model": {"path": str(folder), "max_length": 32},
            "data": {"train": "x.jsonl"},
            "lora": {"enabled": lora, "r": 4, "target_modules": ["query", "value"]},
        }
    )
    model = build_model(recipe)
    return model.double() if double else model


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("lora, matryoshka", [(False, False), (True, True)])
def test_gradcache_equals_full_batch_step(tiny, lora, matryoshka):
    """Same RNG start: one forward of every chunk with gradients vs GradCache (cache, then replay)."""
    import torch

    from vembed_bench.train.gradcache import gradcache_step
    from vembed_bench.train.losses import EmbeddingBatch, build_loss
    from vembed_bench.train.model import embed_inputs
    from vembed_bench.train.recipe import LossConfig

    model = _model(tiny, lora=lora)
    model.train()  # dropout 0.1 is on: RNG replay must reproduce the masks
    loss_module = build_loss(
        LossConfig(temperature=0.05, symmetric=True, matryoshka_dims=[16, 8] if matryoshka else [])
    )
    texts = TEXTS[:8] + DOCS[:8]

    def loss_fn(reps):
        return loss_module(EmbeddingBatch(reps[:8], reps[8:]))

    def embed(chunk):
        return embed_inputs(model, chunk, "cpu")

    chunk = 3
    torch.manual_seed(123)
    reference = loss_fn(
        torch.cat([embed(texts[i : i + chunk]) for i in range(0, len(texts), chunk)])
    )
    reference.backward()
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    value = gradcache_step(embed, texts, loss_fn, chunk)
    got = _grads(model)
    assert value == pytest.approx(float(reference.detach()), abs=1e-10)
    assert set(got) == set(expected) and len(got) > 0
    if lora:
        assert all("lora_" in name for name in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0)
    # Without replaying the RNG the dropout masks differ and so do the gradients: the test can fail.
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)
    with torch.no_grad():
        cached = torch.cat([embed(texts[i : i + chunk]) for i in range(0, len(texts), chunk)])
    reps = cached.detach().requires_grad_(True)
    loss_fn(reps).backward()
    for i, g in zip(range(0, len(texts), chunk), reps.grad.split(chunk)):
        embed(texts[i : i + chunk]).backward(g)
    unreplayed = _grads(model)
    assert any((unreplayed[n] - expected[n]).abs().max() > 1e-5 for n in expected)


def test_gradcache_equals_one_forward_without_dropout(tmp_path):
    """No dropout: GradCache in chunks of 4 == a single forward of the whole batch."""
    import torch

    from vembed_bench.train.gradcache import gradcache_step, plain_step
    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss
    from vembed_bench.train.model import embed_inputs

    model = _model(tiny_st_folder(tmp_path, dropout=0.0))
    loss_module = InfoNCELoss(0.05)
    texts = TEXTS + DOCS

    def loss_fn(reps):
        return loss_module(EmbeddingBatch(reps[:10], reps[10:]))

    def embed(chunk):
        return embed_inputs(model, chunk, "cpu")

    full = plain_step(embed, texts, loss_fn, lambda loss: loss.backward())
    expected = _grads(model)
    model.zero_grad(set_to_none=True)
    cached = gradcache_step(embed, texts, loss_fn, 4)
    got = _grads(model)
    assert cached == pytest.approx(full, abs=1e-10)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0)


# -- the flow ------------------------------------------------------------------------------


def _beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w") as f:
        f.writelines(
            json.dumps({"_id": f"d{i}", "title": "", "text": doc}) + "\n"
            for i, doc in enumerate(DOCS)
        )
    with open(folder / "queries.jsonl", "w") as f:
        f.writelines(
            json.dumps({"_id": f"q{i}", "text": text}) + "\n" for i, text in enumerate(TEXTS)
        )
    for split, ids in (("train", range(6)), ("test", range(6, 10))):
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in ids)
        )
    return folder


def _recipe(tiny, beir, out, **changes):
    recipe = {
        "name": "tiny-run",
        "output_dir": str(out),
        "model": {"path": str(tiny), "name": "tiny", "max_length": 32},
        "data": {"train": str(beir), "split": "train"},
        "loss": {"name": "infonce", "temperature": 0.1, "matryoshka_dims": [16]},
        "lora": {"enabled": True, "r": 4, "target_modules": ["query", "value"]},
        "training": {
            "epochs": 2,
            "batch_size": 4,
            "lr": 1e-3,
            "save_every": 2,
            "keep_checkpoints": 5,
            "gradcache_chunk": 3,
            "seed": 1,
        },
        "eval": {"tasks": [str(beir)], "split": "test", "cache_dir": str(out / "cache")},
    }
    for key, value in changes.items():
        section, _, name = key.partition("__")
        recipe[section][name] = value
    return recipe


def test_train_eval_compare_flow(tiny, tmp_path):
    import numpy as np
    import torch

    import vembed_bench
    from vembed_bench.report.collect import read_comparison
    from vembed_bench.results import load_result

    beir = _beir(tmp_path / "beir")
    run = vembed_bench.train(_recipe(tiny, beir, tmp_path / "runs"), progress=False)
    folder = run.folder
    for name in ("config.yaml", "train_log.jsonl", "loss.png", "comparison.md", "comparison.json"):
        assert (folder / name).is_file(), name
    assert any((folder / "tensorboard").iterdir())
    assert (folder / "model-adapter" / "adapter_config.json").is_file()
    # comparison.json follows the report convention and its rows match the result files.
    loaded = read_comparison(folder / "comparison.json")
    assert len(loaded.pairs) == 2 and [r["step"] for r in loaded.log] == [1, 2, 3, 4]
    record = json.loads((folder / "comparison.json").read_text())
    for pair in record["pairs"]:
        base, tuned = load_result(folder / pair["base"]), load_result(folder / pair["tuned"])
        assert base.model == "tiny" and tuned.model == "tiny-run"
        dim = tuned.model_info.get("matryoshka_dim") or tuned.embedding_dim
        for row in (r for r in record["rows"] if r["dim"] == dim):
            expected = 100 * (tuned.scores[row["metric"]] - base.scores[row["metric"]])
            assert row["delta_pp"] == pytest.approx(expected, abs=0.011)
    assert {r["dim"] for r in record["rows"]} == {32, 16}
    assert "ndcg@10" in run.comparison and "Matryoshka" in run.comparison
    # The output is a plain sentence-transformers folder (LoRA merged) that AutoModel reads too.
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    st = SentenceTransformer(str(run.model_path), device="cpu")
    assert not any("lora" in n for n, _ in st.named_parameters())
    emb = st.encode(["hello"], convert_to_numpy=True)
    assert emb.shape == (1, 32)
    hf = AutoModel.from_pretrained(str(run.model_path))
    st_sd = st[0].auto_model.state_dict()
    for name, value in hf.state_dict().items():
        torch.testing.assert_close(value, st_sd[name])
    # The merge command folds the saved adapter into the base: same weights as the run's model.
    from vembed_bench.train.commands import merge_command

    merged = merge_command(folder / "model-adapter", tiny, tmp_path / "merged")
    emb2 = SentenceTransformer(str(merged), device="cpu").encode(["hello"], convert_to_numpy=True)
    np.testing.assert_allclose(emb, emb2, atol=1e-5)
    # A run folder is never overwritten by accident.
    with pytest.raises(VembedError, match="--overwrite"):
        vembed_bench.train(_recipe(tiny, beir, tmp_path / "runs"), progress=False)


def test_resume_is_exact(tiny, tmp_path):
    """A run killed after step 2 and resumed ends with the same weights as an uninterrupted one."""
    import torch

    from vembed_bench.train.data import read_examples
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.loop import fit, latest_checkpoint
    from vembed_bench.train.model import build_model

    beir = _beir(tmp_path / "beir")
    recipe = resolve_recipe(
        _recipe(tiny, beir, tmp_path / "runs", lora__enabled=False, training__gradcache_chunk=None)
    )
    examples = read_examples(recipe)
    straight = build_model(recipe)
    fit(recipe, straight, examples, tmp_path / "a", progress=False)
    interrupted = build_model(recipe)
    fit(recipe, interrupted, examples, tmp_path / "b", progress=False)
    import shutil

    for stale in sorted((tmp_path / "b" / "checkpoints").glob("step-*"))[1:]:
        shutil.rmtree(stale)  # as if killed right after the step-2 checkpoint
    assert latest_checkpoint(tmp_path / "b").name == "step-0000002"
    torch.manual_seed(999)  # a fresh process has other RNG state: resume must restore it
    resumed = build_model(recipe)
    summary = fit(recipe, resumed, examples, tmp_path / "b", resume=True, progress=False)
    assert summary.resumed_from == 2
    rows = [
        json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    a = dict(straight.named_parameters())
    for name, param in resumed.named_parameters():
        torch.testing.assert_close(param, a[name], atol=1e-6, rtol=0)
    base = dict(build_model(recipe).named_parameters())
    assert any(
        not torch.equal(p, base[n]) for n, p in resumed.named_parameters()
    )  # training moved weights


def test_resume_needs_a_checkpoint(tiny, tmp_path):
    import vembed_bench

    beir = _beir(tmp_path / "beir")
    with pytest.raises(VembedError, match="does not exist"):
        vembed_bench.train(_recipe(tiny, beir, tmp_path / "runs"), resume=True, progress=False)


def test_gradcache_chunk_auto_picks_from_ram_logs_it_and_trains_as_the_fixed_chunk(tiny, tmp_path, monkeypatch):
    """On CPU ``auto`` is the RAM formula for training (tiny BERT: 32 wide, 2 layers, 32 tokens):
    4 * 32 * 32 * 2 * 16 = 131_072 bytes an input; a quarter of 10 MiB holds 20 -> 16 (a model of
    unknown shape would get 8). The run then equals one with ``gradcache_chunk: 16`` step for step,
    and each log row says 16."""
    import torch

    from vembed_bench.encoders import batching
    from vembed_bench.train.data import read_examples
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.loop import fit
    from vembed_bench.train.model import build_model

    monkeypatch.setattr(batching, "available_ram", lambda: 10 << 20)
    beir = _beir(tmp_path / "beir")
    rows = {}
    for chunk in ("auto", 16):
        recipe = resolve_recipe(_recipe(tiny, beir, tmp_path / "runs", lora__enabled=False,
                                        training__gradcache_chunk=chunk))
        torch.manual_seed(0)
        fit(recipe, build_model(recipe), read_examples(recipe), tmp_path / str(chunk), progress=False)
        rows[chunk] = [json.loads(line) for line in (tmp_path / str(chunk) / "train_log.jsonl").read_text().splitlines()]
    assert [r["gradcache_chunk"] for r in rows["auto"]] == [16] * len(rows["auto"])
    assert all("gradcache_chunk" not in r for r in rows[16])
    assert [r["loss"] for r in rows["auto"]] == pytest.approx([r["loss"] for r in rows[16]], abs=1e-6)
