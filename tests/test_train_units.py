"""Recipes, training-data readers and losses (no model weights; losses checked against numpy)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vembed_bench.errors import VembedError
from vembed_bench.train.recipe import load_recipe, recipe_from_dict

MINIMAL = {"name": "r", "model": {"path": "m"}, "data": {"train": "d.jsonl"}}


# -- recipes -------------------------------------------------------------------------------


def test_defaults_then_yaml_then_set(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: {path: m}\ndata: {train: d.jsonl}\ntraining: {lr: 0.001, epochs: 3}\n")
    recipe = load_recipe(path, ["training.epochs=5", "eval.tasks=python_faq", "lora.enabled=true"])
    assert recipe.name == "r"  # default name: the file's stem
    assert recipe.training.lr == 0.001  # from the YAML
    assert recipe.training.epochs == 5  # --set beats the YAML
    assert recipe.training.batch_size == 32  # schema default
    assert recipe.eval.tasks == ["python_faq"] and recipe.lora.enabled is True
    assert recipe.resolve_path("d.jsonl") == tmp_path / "d.jsonl"
    assert load_recipe(path, ["training.lr=1e-4"]).training.lr == pytest.approx(1e-4)


@pytest.mark.parametrize(
    "change, key",
    [
        ({"training": {"lrr": 1}}, "training.lrr"),
        ({"bogus": 1}, "bogus"),
        ({"loss": {"matryoshka": [1]}}, "loss.matryoshka"),
    ],
)
def test_unknown_keys_are_named(change, key):
    with pytest.raises(VembedError, match=f"unknown key '{key}'"):
        recipe_from_dict({**MINIMAL, **change})


@pytest.mark.parametrize(
    "change, key",
    [
        ({"training": {"batch_size": "big"}}, "training.batch_size"),
        ({"training": {"lr": "fast"}}, "training.lr"),
        ({"lora": {"enabled": "yes"}}, "lora.enabled"),
        ({"loss": {"matryoshka_dims": [64, "x"]}}, r"loss.matryoshka_dims\[1\]"),
        ({"training": 3}, "training"),
        ({"training": {"schedule": "cyclic"}}, "training.schedule"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
    ],
)
def test_wrong_types_and_values_are_named(change, key):
    with pytest.raises(VembedError, match=f"'{key}'"):
        recipe_from_dict({**MINIMAL, **change})


def test_seed_recipes_validate(tmp_path):
    from pathlib import Path

    from vembed_bench.data.data_root import use_data_root
    from vembed_bench.train import train

    recipes = sorted((Path(__file__).parent.parent / "trainers").glob("*.yaml"))
    assert len(recipes) >= 2
    for path in recipes:
        run = train(path, dry_run=True)
        assert run.recipe.name
        with use_data_root(tmp_path):  # their @data_root/ and image_root paths stay in their roots
            assert train(path, dry_run=True).recipe.name == run.recipe.name


def test_input_kinds_known_before_loading_match_the_built_models():
    """Preflight refuses images for a text model from ``INPUT_KINDS``; each backend's ``accepts``
    (what the built model says) must agree, or preflight would refuse good runs or pass bad ones."""
    pytest.importorskip("torch")
    from vembed_bench.train.backends import composed_backend
    from vembed_bench.train.backends.hf_vision_backend import CLIPTrainable, VisionTrainable
    from vembed_bench.train.backends.llm_backend import LLMEmbedder
    from vembed_bench.train.backends.timm_backend import TimmTrainable
    from vembed_bench.train.backends.vlm_backend import VLMTrainable
    from vembed_bench.train.model import INPUT_KINDS, TRAINABLE_TYPES

    built = {"timm": TimmTrainable, "composed": composed_backend._composed_module(),
             "llm": LLMEmbedder, "vision": VisionTrainable, "clip": CLIPTrainable,
             "vlm": VLMTrainable}
    assert set(built) == set(TRAINABLE_TYPES)
    for kind, cls in built.items():
        assert INPUT_KINDS[kind] == cls.accepts, kind
    assert INPUT_KINDS["sentence-transformers"] == INPUT_KINDS["hf"] == {"text"}


def test_train_log_drops_a_torn_last_row_and_refuses_a_damaged_one(tmp_path):
    from vembed_bench.train.loop import _append_log, _restore_log

    path = tmp_path / "train_log.jsonl"
    for step in (1, 2, 3):
        _append_log(path, {"step": step, "loss": 1.0 / step})
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 4, "lo')  # the process died in the middle of a row
    assert [row["step"] for row in _restore_log(path, 3)] == [1, 2, 3]
    assert [row["step"] for row in _restore_log(path, 2)] == [1, 2]  # resumed from step 2
    assert path.read_text(encoding="utf-8") == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n'
    path.write_text('{"step": 1}\n{oops\n{"step": 3}\n', encoding="utf-8")
    with pytest.raises(VembedError, match="train_log.jsonl:2"):
        _restore_log(path, 3)


# -- data ----------------------------------------------------------------------------------


def _recipe(tmp_path, train, **data):
    return recipe_from_dict(
        {"name": "r", "model": {"path": "m"}, "data": {"train": train, **data}}, base_dir=tmp_path
    )


def test_jsonl_pairs_embedrag_and_prompts(tmp_path):
    from vembed_bench.train.data import read_examples

    (tmp_path / "p.jsonl").write_text(
        json.dumps({"query": "q1", "positive": "p1", "negatives": ["n1", "n2"]})
        + "\n\n"
        + json.dumps({"query": "q2", "positive": "p2"})
        + "\n"
    )
    got = read_examples(_recipe(tmp_path, "p.jsonl", query_prompt="query: "))
    assert [(e.query, e.positive, e.negatives) for e in got] == [
        ("query: q1", "p1", ("n1", "n2")),
        ("query: q2", "p2", ()),
    ]
    (tmp_path / "e.jsonl").write_text(
        json.dumps({"query": "q", "pos": ["a", "b"], "neg": ["c"]}) + "\n"
    )
    got = read_examples(_recipe(tmp_path, "e.jsonl"))
    assert [(e.positive, e.negatives) for e in got] == [("a", ("c",)), ("b", ("c",))]


def test_csv_with_column_mapping_and_parquet(tmp_path):
    from vembed_bench.train.data import read_examples

    (tmp_path / "d.csv").write_text('question,answer,negatives\nhow?,like this,"[""no""]"\n')
    got = read_examples(
        _recipe(tmp_path, "d.csv", columns={"query": "question", "positive": "answer"})
    )
    assert [(e.query, e.positive, e.negatives) for e in got] == [("how?", "like this", ("no",))]
    pytest.importorskip("pyarrow")
    import pandas as pd

    pd.DataFrame({"query": ["a", "b"], "pos": [["x"], ["y", "z"]], "neg": [[], ["w"]]}).to_parquet(
        tmp_path / "d.parquet"
    )
    got = read_examples(_recipe(tmp_path, "d.parquet"))
    assert [(e.query, e.positive, e.negatives) for e in got] == [
        ("a", "x", ()),
        ("b", "y", ("w",)),
        ("b", "z", ("w",)),
    ]


def test_bad_rows_name_file_and_line(tmp_path):
    from vembed_bench.train.data import read_examples

    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"query": "q", "positive": "p"}) + "\n" + json.dumps({"query": "q"}) + "\n"
    )
    with pytest.raises(VembedError, match=rf"{path}:2: 'positive'"):
        read_examples(_recipe(tmp_path, "p.jsonl"))
    path.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n{oops\n")
    with pytest.raises(VembedError, match=rf"{path}:2: invalid JSON"):
        read_examples(_recipe(tmp_path, "p.jsonl"))
    (tmp_path / "d.csv").write_text("query,positive\nok,fine\n,empty\n")
    with pytest.raises(VembedError, match=r"d.csv:3: 'query'"):
        read_examples(_recipe(tmp_path, "d.csv"))
    with pytest.raises(VembedError, match="does not exist"):
        read_examples(_recipe(tmp_path, "missing.jsonl"))


def test_beir_train_qrels_give_held_out_pairs():
    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.train.data import read_examples

    got = read_examples(
        recipe_from_dict(
            {"name": "r", "model": {"path": "m"}, "data": {"train": "python_faq", "split": "train"}}
        )
    )
    card = resolve_card("python_faq")
    train, test = load_task(card, "train"), load_task(card, "test")
    train_q = {q.text for q in train.queries}
    assert len(got) == sum(1 for docs in train.qrels.values() for g in docs.values() if g > 0)
    assert {e.query for e in got} == train_q
    assert not train_q & {q.text for q in test.queries}  # the test queries stay held out


# -- losses (against plain numpy) ----------------------------------------------------------


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _lse(v):
    m = v.max()
    return m + math.log(np.exp(v - m).sum())


def _infonce_ref(a, p, n, t, symmetric):
    a, p = _unit(a), _unit(p)
    cands = np.concatenate([p] + ([_unit(n).reshape(-1, a.shape[1])] if n is not None else []))
    forward = np.mean([_lse(a[i] @ cands.T / t) - a[i] @ p[i] / t for i in range(len(a))])
    if not symmetric:
        return forward
    backward = np.mean([_lse(p[i] @ a.T / t) - p[i] @ a[i] / t for i in range(len(a))])
    return (forward + backward) / 2


@pytest.fixture
def emb():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 8)), rng.normal(size=(6, 8)), rng.normal(size=(6, 2, 8))


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("with_neg", [False, True])
def test_infonce_matches_numpy(emb, symmetric, with_neg):
    import torch

    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss

    a, p, n = emb
    n = n if with_neg else None
    t = torch.tensor
    got = InfoNCELoss(0.07, symmetric=symmetric)(
        EmbeddingBatch(t(a), t(p), None if n is None else t(n))
    )
    assert float(got) == pytest.approx(_infonce_ref(a, p, n, 0.07, symmetric), rel=1e-9)


def test_learnable_temperature_gets_a_gradient(emb):
    import torch

    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.infonce import InfoNCELoss

    a, p, _ = emb
    loss = InfoNCELoss(0.1, learnable_temperature=True)
    loss(EmbeddingBatch(torch.tensor(a), torch.tensor(p))).backward()
    assert loss.log_temperature.grad is not None and float(loss.log_temperature.grad) != 0.0


def test_matryoshka_and_spread_out(emb):
    import torch

    from vembed_bench.train.losses import EmbeddingBatch, build_loss
    from vembed_bench.train.recipe import LossConfig

    a, p, _ = emb
    loss = build_loss(
        LossConfig(
            temperature=0.1,
            matryoshka_dims=[4, 2],
            matryoshka_weights=[0.5, 0.25],
            spread_out_weight=0.3,
        )
    )
    got = float(loss(EmbeddingBatch(torch.tensor(a), torch.tensor(p))))
    expected = (
        _infonce_ref(a, p, None, 0.1, False)
        + 0.5 * _infonce_ref(a[:, :4], p[:, :4], None, 0.1, False)
        + 0.25 * _infonce_ref(a[:, :2], p[:, :2], None, 0.1, False)
    )
    sims = _unit(a) @ _unit(p).T
    off = sims[~np.eye(6, dtype=bool)]
    expected += 0.3 * (off.mean() ** 2 + max(0.0, (off**2).mean() - 1 / 8))
    assert got == pytest.approx(expected, rel=1e-9)


def test_supcon_triplet_cosent_distill_match_numpy(emb):
    import torch

    from vembed_bench.train.losses import EmbeddingBatch
    from vembed_bench.train.losses.cosent import CoSENTLoss
    from vembed_bench.train.losses.distill import DistillLoss
    from vembed_bench.train.losses.supcon import SupConLoss
    from vembed_bench.train.losses.triplet import TripletLoss

    a, p, n = emb
    t = torch.tensor
    labels = np.array([0, 0, 1, 1, 2, 3])
    # SupCon over 12 views (anchors then positives), same-label views are positives.
    z = _unit(np.concatenate([a, p]))
    lab = np.concatenate([labels, labels])
    terms = []
    for i in range(12):
        others = [j for j in range(12) if j != i]
        denom = _lse(np.array([z[i] @ z[j] / 0.1 for j in others]))
        pos = [j for j in others if lab[j] == lab[i]]
        terms.append(-np.mean([z[i] @ z[j] / 0.1 - denom for j in pos]))
    got = SupConLoss(0.1)(EmbeddingBatch(t(a), t(p), labels=t(labels)))
    assert float(got) == pytest.approx(np.mean(terms), rel=1e-9)
    # Triplet with hard negatives.
    ua, up, un = _unit(a), _unit(p), _unit(n)
    ref = np.mean(
        [
            max(0.0, (1 - ua[i] @ up[i]) - (1 - ua[i] @ un[i, k]) + 0.2)
            for i in range(6)
            for k in range(2)
        ]
    )
    assert float(TripletLoss(0.2)(EmbeddingBatch(t(a), t(p), t(n)))) == pytest.approx(ref, rel=1e-9)
    # CoSENT.
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7, 0.2])
    cos = np.array([ua[i] @ up[i] for i in range(6)]) * 20
    pairs = [cos[j] - cos[i] for i in range(6) for j in range(6) if scores[i] > scores[j]]
    ref = math.log(1 + np.exp(pairs).sum())
    assert float(CoSENTLoss(20)(EmbeddingBatch(t(a), t(p), scores=t(scores)))) == pytest.approx(
        ref, rel=1e-9
    )
    # Distillation: KL(teacher || student) per row, averaged.
    teacher = np.random.default_rng(1).normal(size=(6, 3))
    student = (
        np.stack([[ua[i] @ up[i]] + [ua[i] @ un[i, k] for k in range(2)] for i in range(6)]) / 0.05
    )
    ref = 0.0
    for i in range(6):
        pt = np.exp(teacher[i] - _lse(teacher[i]))
        ref += np.sum(pt * (np.log(pt) - (student[i] - _lse(student[i]))))
    got = DistillLoss(0.05)(EmbeddingBatch(t(a), t(p), t(n), teacher_scores=t(teacher)))
    assert float(got) == pytest.approx(ref / 6, rel=1e-9)


def test_cli_train_dry_run_and_errors(tmp_path):
    """`train --dry-run` prints the resolved recipe; a bad key is one line naming it, exit code 2."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parent.parent
    script = (
        "import sys\nfrom vembed_bench.cli import main\nsys.argv = ['vembed-bench'] + sys.argv[1:]\n"
        "try:\n    main()\nfinally:\n    heavy = [m for m in ('torch', 'transformers', 'sentence_transformers')"
        " if m in sys.modules]\n    print('HEAVY', heavy, file=sys.stderr)\n"
    )
    recipe = root / "trainers" / "minilm_python_faq.yaml"
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "train",
            str(recipe),
            "--dry-run",
            "--set",
            "training.epochs=7",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "epochs: 7" in ok.stdout and "recipe OK" in ok.stdout
    assert "HEAVY []" in ok.stderr  # validating a recipe never loads torch
    assert "recipe OK (inputs found)" in ok.stdout
    gone = subprocess.run(
        [sys.executable, "-c", script, "train", str(recipe), "--dry-run", "--set",
         "data.train=nowhere/pairs.jsonl"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert gone.returncode == 0, gone.stderr  # valid recipe, missing files: listed, not fatal
    assert "# missing: data.train nowhere/pairs.jsonl" in gone.stdout
    assert "1 input(s) missing" in gone.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "train",
            str(recipe),
            "--dry-run",
            "--set",
            "loss.temprature=0.1",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "unknown key 'loss.temprature'" in bad.stderr and "Traceback" not in bad.stderr
