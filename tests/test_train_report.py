"""What a fine-tuning run reports beyond the aggregate delta: per-query wins and losses with
the top documents before and after, forgetting on guard tasks, and the model's own card.

Unit tests use synthetic results (numbers chosen so the expected outcome is known); one
flow test trains the tiny random BERT of ``train_helpers`` on a 10-query BEIR folder and
checks every reported number against the result files and TREC run files it wrote.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from train_helpers import tiny_st_folder

from vembed_bench.errors import VembedError
from vembed_bench.metrics import MetricScores
from vembed_bench.results import Result


def _result(values, *, ids=None, model="m", task="t", metric="ndcg@10") -> Result:
    values = np.asarray(values, dtype=float)
    ids = list(ids or [f"q{i:02d}" for i in range(len(values))])
    scores = MetricScores(query_ids=ids, per_query={metric: values}, aggregate={metric: float(values.mean())})
    return Result(
        task=task, split="test", model=model, main_metric=metric, scores=scores.aggregate,
        per_query=scores, k_values=[10], metric_definitions={}, model_info={"fingerprint": model},
        task_info={"data_fingerprint": "x", "n_queries": len(values)}, search_info={},
        embedding_dim=4, seed=0, limit=None, timings={}, environment={},
    )


# -- per-query counts and movers -----------------------------------------------------------


def test_counts_and_movers_match_numpy_with_ties_by_query_id():
    from vembed_bench.report.regression import query_changes

    rng = np.random.default_rng(3)
    base = rng.choice([0.0, 0.5, 1.0], size=40)
    tuned = base.copy()
    tuned[rng.choice(40, size=20, replace=False)] = rng.choice([0.0, 0.25, 0.5, 1.0], size=20)
    ids = [f"q{i:02d}" for i in range(40)]
    order = rng.permutation(40)  # the tuned result lists its queries in another order
    changes = query_changes(_result(base, ids=ids), _result(tuned[order], ids=[ids[i] for i in order]),
                            top=5)
    d = tuned - base
    assert (changes.improved, changes.worsened, changes.unchanged) == (
        int(np.sum(d > 0)), int(np.sum(d < 0)), int(np.sum(d == 0)))
    assert changes.n_queries == 40
    # Largest |delta| first; equal deltas by query id (np.lexsort: last key is primary).
    names = np.array(ids)
    up = [i for i in np.lexsort((names, -d)) if d[i] > 0][:5]
    down = [i for i in np.lexsort((names, d)) if d[i] < 0][:5]
    assert [m.query_id for m in changes.top_improved] == [ids[i] for i in up]
    assert [m.query_id for m in changes.top_worsened] == [ids[i] for i in down]
    for mover in changes.top_improved + changes.top_worsened:
        i = ids.index(mover.query_id)
        assert (mover.base, mover.tuned, mover.delta) == (base[i], tuned[i], d[i])


def test_movers_hand_checked_tie_order():
    from vembed_bench.report.regression import query_changes

    ids = ["b", "a", "c", "d", "e"]
    changes = query_changes(_result([0.0, 0.0, 1.0, 0.5, 0.5], ids=ids),
                            _result([1.0, 1.0, 0.0, 0.5, 0.75], ids=ids), top=2)
    assert [m.query_id for m in changes.top_improved] == ["a", "b"]  # +1 each: by id
    assert [m.query_id for m in changes.top_worsened] == ["c"]
    assert (changes.improved, changes.worsened, changes.unchanged) == (3, 1, 1)


def test_read_top_documents(tmp_path):
    from vembed_bench.report.regression import read_top_documents

    run = tmp_path / "x.trec"
    run.write_text("q1 Q0 d9 2 0.8 r\nq1 Q0 d3 1 0.9 r\nq2 Q0 d1 1 0.7 r\nq1 Q0 d4 4 0.1 r\n"
                   "q1 Q0 d5 3 0.2 r\n")
    assert read_top_documents(run, ["q1"], k=3) == {
        "q1": [("d3", 1, 0.9), ("d9", 2, 0.8), ("d5", 3, 0.2)]}
    run.write_text("q1 Q0 d9 2\n")
    with pytest.raises(VembedError, match=r"x.trec:1: a TREC run line has 6 fields"):
        read_top_documents(run, ["q1"])


# -- guard verdicts ------------------------------------------------------------------------


@pytest.mark.parametrize("shift, status", [(-0.3, "forgetting"), (0.0, "no significant change"),
                                           (0.3, "improved")])
def test_guard_verdict_flags_only_a_drop_whose_interval_excludes_zero(shift, status):
    from vembed_bench.report.regression import guard_verdict
    from vembed_bench.report.stats import paired_bootstrap_ci

    rng = np.random.default_rng(11)
    base = rng.uniform(0.3, 0.7, size=60)
    noise = rng.normal(0.0, 0.05, size=60)
    noise -= noise.mean()  # no shift at all on average: the interval straddles 0
    tuned = base + shift + noise
    verdict = guard_verdict(_result(base, task="guard"), _result(tuned, task="guard", model="ft"))
    low, high = paired_bootstrap_ci(tuned - base)
    assert (verdict.delta.ci_low, verdict.delta.ci_high) == (low, high)
    assert verdict.status == status
    assert verdict.forgetting is (status == "forgetting") is (high < 0)
    expected = f"{shift * 100:+.2f}".replace("-0.00", "+0.00")
    assert verdict.line().startswith(f"{status}: guard ndcg@10 {expected} [")
    record = verdict.to_dict()
    assert record["forgetting"] is verdict.forgetting
    assert record["ci_high_pp"] == round(100 * high, 2)


@pytest.mark.parametrize("base, tuned, forgetting", [
    # Every query drops by 0.25: every resample's mean is -0.25, the interval is that point.
    ([1.0, 0.75, 0.5, 0.25] * 5, [0.75, 0.5, 0.25, 0.0] * 5, True),
    # One query of three loses everything: resamples without it have mean 0, so with
    # 3 queries (8/27 of resamples miss it) the upper end of the 95% interval is 0, not below.
    ([1.0, 1.0, 1.0], [1.0, 1.0, 0.0], False),
    # Half the queries gain what the other half lose: no drop on average.
    ([0.5] * 10, [0.75, 0.25] * 5, False),
])
def test_guard_verdict_hand_made_values(base, tuned, forgetting):
    from vembed_bench.report.regression import guard_verdict

    verdict = guard_verdict(_result(base, task="guard"), _result(tuned, task="guard", model="ft"))
    assert verdict.forgetting is forgetting
    assert verdict.to_dict()["delta_pp"] == round(100 * (np.mean(tuned) - np.mean(base)), 2)
    if forgetting:
        assert verdict.delta.ci_low == verdict.delta.ci_high == pytest.approx(-0.25)
    else:
        assert verdict.delta.ci_low <= 0.0 <= verdict.delta.ci_high


def test_guard_verdict_refuses_results_on_other_data():
    from vembed_bench.report.regression import guard_verdict

    other = _result([0.5, 0.5])
    other.task_info["data_fingerprint"] = "y"
    with pytest.raises(VembedError, match="different data"):
        guard_verdict(_result([0.5, 0.5]), other)


# -- thumbnail grid ------------------------------------------------------------------------


def test_movers_grid_frames_query_relevant_and_not(tmp_path):
    from PIL import Image

    from vembed_bench.data.types import Item, TaskData
    from vembed_bench.report.grid import BORDER, GREEN, GREY, RED, TILE
    from vembed_bench.report.regression import Mover, QueryChanges, RankedDoc, save_movers_grid

    for name, colour in (("a", "blue"), ("b", "yellow"), ("c", "black")):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{name}.png")
    corpus = [Item(n, image=tmp_path / f"{n}.png") for n in ("a", "b", "c")]
    data = TaskData(name="img", split="test", queries=[Item("q", text="a query")], corpus=corpus,
                    qrels={"q": {"b": 1}})
    mover = Mover("q", 0.0, 1.0, 1.0,
                  before=(RankedDoc("a", 1, 0.9, False), RankedDoc("c", 2, 0.5, False)),
                  after=(RankedDoc("b", 1, 0.9, True), RankedDoc("a", 2, 0.8, False),
                         RankedDoc("c", 3, 0.1, False)))
    changes = QueryChanges("img", "test", "hit@1", 1, 1, 0, 0, top_improved=(mover,))
    grid = Image.open(save_movers_grid(changes, data, tmp_path / "g.png")).convert("RGB")
    step = TILE + 2 * BORDER
    assert grid.size == (8 * step, step)
    frames = [grid.getpixel((col * step + 1, 1)) for col in range(8)]
    white = (255, 255, 255)
    # query | before: a, c, (none) | gap | after: b, a, c
    assert frames == [GREY, RED, RED, white, white, GREEN, RED, RED]


# -- recipe key ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_st_folder(tmp_path_factory.mktemp("tiny"))


TEXTS = [f"question {i}: how do I {w} a python {o}" for i, (w, o) in
         enumerate([("sort", "list"), ("copy", "dict"), ("read", "file"), ("join", "string"),
                    ("reverse", "list"), ("merge", "dict"), ("write", "file"), ("split", "string"),
                    ("filter", "list"), ("invert", "dict"), ("close", "file"), ("strip", "string")])]
DOCS = [t.replace("question", "answer").replace("how do I", "you can") + " with a builtin" for t in TEXTS]


def _beir(folder: Path, texts=TEXTS, docs=DOCS) -> Path:
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"d{i}", "title": "", "text": d}) + "\n" for i, d in enumerate(docs))
    with open(folder / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    n = len(texts)
    for split, ids in (("train", range(n // 2)), ("test", range(n // 2, n))):
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in ids))
    return folder


def _recipe(tiny, beir, out, guards=()):
    return {
        "name": "tiny-report",
        "output_dir": str(out),
        "model": {"path": str(tiny), "name": "tiny", "max_length": 32},
        "data": {"train": str(beir), "split": "train"},
        "loss": {"name": "infonce", "temperature": 0.1},
        "training": {"epochs": 3, "batch_size": 3, "lr": 5e-3, "seed": 2, "logger": "none"},
        "eval": {"tasks": [str(beir)], "guard_tasks": list(guards), "split": "test",
                 "cache_dir": str(out / "cache")},
    }


@pytest.mark.parametrize("guards, message", [
    (3, r"'eval.guard_tasks\[0\]' must be a string"),
    ({"a": 1}, "'eval.guard_tasks' must be a list"),
    (["no_such_task_anywhere"], r"'eval.guard_tasks\[0\]' .*no_such_task_anywhere"),
    (["BEIR"], r"'eval.guard_tasks\[0\]' '\S+beir' is also in eval.tasks"),
    (["BEIR/"], r"'eval.guard_tasks\[0\]' .* is the task eval.tasks\[0\] names"),
    (["G", "G"], r"'eval.guard_tasks\[1\]' .* is listed twice"),
])
def test_bad_guard_tasks_are_refused_before_the_run_folder_exists(tiny, tmp_path, guards, message):
    import vembed_bench

    beir = _beir(tmp_path / "beir")
    guard = _beir(tmp_path / "guard")
    names = {"BEIR": str(beir), "BEIR/": str(beir) + "/", "G": str(guard)}
    recipe = _recipe(tiny, beir, tmp_path / "runs")
    recipe["eval"]["guard_tasks"] = [names.get(g, g) for g in guards] if isinstance(guards, list) else guards
    with pytest.raises(VembedError, match=message):
        vembed_bench.train(recipe, progress=False)
    assert not (tmp_path / "runs" / "tiny-report").exists()


def test_cli_refuses_an_unknown_guard_task_in_one_line_exit_2_and_no_run_folder(tiny, tmp_path, monkeypatch,
                                                                                capsys):
    import yaml

    from vembed_bench.cli import main

    beir = _beir(tmp_path / "beir")
    recipe = _recipe(tiny, beir, tmp_path / "runs", guards=["no_such_task_anywhere"])
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    monkeypatch.setattr(sys, "argv", ["vembed-bench", "train", str(path)])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: {path}: 'eval.guard_tasks[0]'")
    assert "no_such_task_anywhere" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


# -- the flow ------------------------------------------------------------------------------


def test_train_run_reports_per_query_changes_guards_and_its_own_card(tiny, tmp_path):
    import vembed_bench
    from vembed_bench.encoders.naming import folder_display_name
    from vembed_bench.evaluation.predictions import read_trec_run
    from vembed_bench.report.stats import paired_bootstrap_ci
    from vembed_bench.results import load_result

    beir = _beir(tmp_path / "beir")
    guard = _beir(tmp_path / "guard", texts=[t.upper() for t in TEXTS], docs=DOCS[::-1])
    run = vembed_bench.train(_recipe(tiny, beir, tmp_path / "runs", guards=[str(guard)]), progress=False)
    folder = run.folder
    record = json.loads((folder / "comparison.json").read_text())
    roles = {pair["role"]: pair for pair in record["pairs"]}
    assert set(roles) == {"eval", "guard"}
    moved = 0
    for entry in record["per_query"]:
        pair = roles["guard" if entry["task"] == "guard" else "eval"]
        base, tuned = load_result(folder / pair["base"]), load_result(folder / pair["tuned"])
        # Counts against plain numpy on the result files' per-query values (aligned by id).
        metric = base.main_metric
        b = dict(zip(base.per_query.query_ids, base.per_query.per_query[metric]))
        t = dict(zip(tuned.per_query.query_ids, tuned.per_query.per_query[metric]))
        d = np.array([t[q] - b[q] for q in sorted(b)])
        assert [entry["improved"], entry["worsened"], entry["unchanged"]] == [
            int(np.sum(d > 1e-9)), int(np.sum(d < -1e-9)), int(np.sum(np.abs(d) <= 1e-9))]
        # The top 3 before/after are the first 3 of each saved ranking, in rank order.
        before = read_trec_run(folder / entry["base_run"])
        after = read_trec_run(folder / entry["tuned_run"])
        assert entry["base_run"] == pair["base"].replace(".json", ".trec")
        for mover in entry["top_improved"] + entry["top_worsened"]:
            moved += 1
            qid = mover["query_id"]
            for docs, ranking in ((mover["before"], before[qid]), (mover["after"], after[qid])):
                top = sorted(ranking, key=lambda doc: -ranking[doc])[:3]
                assert [doc["id"] for doc in docs] == top
                assert [doc["relevant"] for doc in docs] == [doc == f"d{qid[1:]}" for doc in top]
            assert mover["delta"] == pytest.approx(t[qid] - b[qid])
            assert mover["query"] == (TEXTS if entry["task"] == "beir" else [x.upper() for x in TEXTS])[
                int(qid[1:])]
    assert moved, "the tiny run should move some queries (else this test checks nothing)"
    # The guard verdict is the paired bootstrap interval of the guard's per-query differences.
    (verdict,) = record["guards"]
    base, tuned = load_result(folder / roles["guard"]["base"]), load_result(folder / roles["guard"]["tuned"])
    metric = base.main_metric
    t = dict(zip(tuned.per_query.query_ids, tuned.per_query.per_query[metric]))
    diffs = np.array([t[q] - v for q, v in zip(base.per_query.query_ids, base.per_query.per_query[metric])])
    low, high = paired_bootstrap_ci(diffs)
    assert (verdict["ci_low_pp"], verdict["ci_high_pp"]) == (round(100 * low, 2), round(100 * high, 2))
    assert verdict["forgetting"] is (high < 0)
    text = (folder / "comparison.md").read_text()
    assert verdict["line"] in text and "## Forgetting (guard tasks)" in text
    assert text.count("### Per-query changes (ndcg@10)") == 2
    assert "Biggest" in text and "Biggest" not in run.summary
    # The model card: the run's name as H1 (so the folder is named after the run), the base
    # model and its fingerprint, the data and the right numbers; nothing of the base's card.
    card = (run.model_path / "README.md").read_text()
    assert card.splitlines()[0] == "# tiny-report"
    assert folder_display_name(run.model_path) == "tiny-report"
    assert base.weights_fingerprint in card
    assert f"`{beir}` (split train, format auto): 6 examples" in card
    for pair in record["pairs"]:
        b, tu = load_result(folder / pair["base"]), load_result(folder / pair["tuned"])
        row = (f"| {b.task} | test | {pair['role']} | ndcg@10 | {100 * b.main_score:.2f} | "
               f"{100 * tu.main_score:.2f} | {100 * (tu.main_score - b.main_score):+.2f} |")
        assert row.replace("-0.00", "+0.00") in card
    assert verdict["line"] in card
    assert "SentenceTransformer based on" not in card and "sentence_transformers_model_id" not in card


def test_image_task_movers_name_the_query_image_and_draw_a_framed_grid(tmp_path):
    """An image-to-image eval task: each mover names its query image, and the grid has one row
    per mover whose frames say, for the top 3 before and after, relevant (green) or not (red)."""
    pytest.importorskip("timm")
    from PIL import Image
    from test_train_timm import CLASSES, _images, _recipe as _timm_recipe, _timm_folder, _write_jsonl

    import vembed_bench
    from vembed_bench.report.grid import BORDER, GREEN, GREY, RED, TILE

    model = _timm_folder(tmp_path / "timm")
    data = tmp_path / "data"
    rows = _images(data, per_class=6)
    train = _write_jsonl(data / "train.jsonl", rows)
    task = data  # image paths may not leave the task folder
    (task / "qrels").mkdir(parents=True)
    by_class = {c: [r["query_image"] for r in rows if r["label"] == c] for c in CLASSES}
    queries = {f"q_{c}_{i}": by_class[c][i] for c in CLASSES for i in range(2)}
    corpus = {f"d_{c}_{i}": by_class[c][i] for c in CLASSES for i in range(2, 6)}
    for name, items in (("queries", queries), ("corpus", corpus)):
        (task / f"{name}.jsonl").write_text("".join(
            json.dumps({"_id": k, "image": v}) + "\n" for k, v in items.items()))
    (task / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t1\n" for q in queries for d in corpus if q.split("_")[1] == d.split("_")[1]))
    recipe = _timm_recipe(model, train, tmp_path / "runs",
                          eval={"tasks": [str(task)], "split": "test", "cache_dir": str(tmp_path / "cache")})
    recipe["training"]["max_steps"] = 6
    run = vembed_bench.train(recipe, progress=False)
    (entry,) = json.loads((run.folder / "comparison.json").read_text())["per_query"]
    movers = entry["top_worsened"] + entry["top_improved"]
    assert movers, "the tiny run should move some queries (else this test checks nothing)"
    grid = Image.open(run.folder / entry["grid"]).convert("RGB")
    step = TILE + 2 * BORDER
    assert grid.size == (8 * step, len(movers) * step)
    white = (255, 255, 255)
    for row, mover in enumerate(movers):
        assert Path(mover["image"]) == (data / queries[mover["query_id"]]).resolve()
        relevant = lambda doc: doc.split("_")[1] == mover["query_id"].split("_")[1]  # noqa: E731
        expected = [GREY, *[GREEN if relevant(d["id"]) else RED for d in mover["before"]], white,
                    *[GREEN if relevant(d["id"]) else RED for d in mover["after"]]]
        assert len(mover["before"]) == len(mover["after"]) == 3
        assert [grid.getpixel((col * step + 1, row * step + 1)) for col in range(8)] == expected
    assert entry["grid"] in (run.folder / "comparison.md").read_text()
