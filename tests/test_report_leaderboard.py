"""Leaderboard pages from the fixture result files in tests/data/results.

Golden files pin the exact Markdown (regenerate with VEMBED_UPDATE_GOLDEN=1
after an intended change, and review the diff). The numbers in them are
checked independently here: ranks, scores, suite averages and deltas are
recomputed from the raw JSON with numpy, and intervals and p-values are
compared with scipy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from markdown_tables import md_table
from scipy import stats

from vembed_bench.errors import VembedError
from vembed_bench.report.build import write_leaderboards
from vembed_bench.report.collect import collect, find_result_files, read_result_file, read_train_log
from vembed_bench.report.comparison import comparability_problem, comparison_table
from vembed_bench.report.leaderboard import build_boards, matryoshka_dim, system_key, system_labels
from vembed_bench.report.plots import group_matryoshka

FIXTURES = REPO / "tests" / "data" / "results"
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("VEMBED_UPDATE_GOLDEN") == "1"
RUN = "runs/text-small-faq"


@pytest.fixture(scope="module")
def board_dir(tmp_path_factory) -> Path:
    """Fixtures copied to tmp/results; Markdown-only leaderboards written to tmp/leaderboards."""
    root = tmp_path_factory.mktemp("lb")
    shutil.copytree(FIXTURES, root / "results")
    write_leaderboards([root / "results"], root / "leaderboards", plots=False, html=False)
    return root


def raw(relative: str) -> dict:
    return json.loads((FIXTURES / relative).read_text())




def strip_link(cell: str) -> str:
    return re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", cell).strip("*")


def test_markdown_matches_golden_files(board_dir):
    out = board_dir / "leaderboards"
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.md"))
    golden_dir = GOLDEN / "leaderboards"
    if UPDATE:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for name in produced:
            (golden_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / name, golden_dir / name)
    expected = sorted(p.relative_to(golden_dir).as_posix() for p in golden_dir.rglob("*.md"))
    assert produced == expected
    for name in produced:
        assert (out / name).read_text() == (golden_dir / name).read_text(), name


def test_rerun_rewrites_identical_bytes(board_dir, tmp_path):
    out = board_dir / "leaderboards"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    write_leaderboards([board_dir / "results"], out, plots=False, html=False)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_task_page_ranks_and_scores_match_the_json(board_dir):
    page = (board_dir / "leaderboards" / "tasks" / "faq_en-test.md").read_text()
    rows = md_table(page, "| # |")
    files = {
        "text-small-ft": f"{RUN}/eval/fine_tuned/text-small-ft-fb51c191/faq_en/test.json",
        "text-base": "text-base-5362cc99/faq_en/test.json",
        "text-base (dim 256)": "matryoshka/dim256/text-base-5362cc99/faq_en/test.json",
        "text-base (dim 128)": "matryoshka/dim128/text-base-5362cc99/faq_en/test.json",
        "text-small": "text-small-dc3d9353/faq_en/test.json",
        "text-base (dim 64)": "matryoshka/dim64/text-base-5362cc99/faq_en/test.json",
        "clip-b32": "clip-b32-ac33dec4/faq_en/test.json",
    }
    records = {label: raw(path) for label, path in files.items()}
    expected_order = sorted(records, key=lambda m: -records[m]["scores"]["ndcg@10"])
    assert [r["model"] for r in rows] == expected_order
    assert [r["#"] for r in rows] == [str(i) for i in range(1, 8)]
    leader = records[expected_order[0]]
    # The headline shows the main metric and recall@K at the task's K values; the folded
    # table below it has every metric of the same rows, in the same order.
    assert list(rows[0])[:9] == ["#", "model", "ndcg@10", "Δ vs #1", "95% CI", "p",
                                 "recall@1", "recall@5", "recall@10"]
    full = md_table(page, "<details>")
    assert [r["model"] for r in full] == expected_order
    for row in full:
        record = records[row["model"]]
        assert list(row)[2] == "ndcg@10" and sorted(list(row)[2:]) == sorted(record["scores"])
        for metric, value in record["scores"].items():
            assert row[metric] == f"{100 * value:.2f}"
    for row in rows:
        record = records[row["model"]]
        for metric in ("ndcg@10", "recall@1", "recall@5", "recall@10"):
            assert row[metric] == f"{100 * record['scores'][metric]:.2f}"
        assert row["dim"] == str(record["embedding_dim"])
        assert strip_link(row["result"]) == "json"
        assert f"(../../results/{files[row['model']]})" in row["result"]
        if row["#"] == "1":
            continue
        # Δ vs #1: mean per-query difference (aligned by query id); scipy gives the uncertainty.
        mine = dict(
            zip(record["per_query"]["query_ids"], record["per_query"]["per_query"]["ndcg@10"])
        )
        lead = dict(
            zip(leader["per_query"]["query_ids"], leader["per_query"]["per_query"]["ndcg@10"])
        )
        ids = sorted(lead)
        diffs = np.array([mine[q] - lead[q] for q in ids])
        delta = float(row["Δ vs #1"].split()[0])
        assert delta == pytest.approx(100 * diffs.mean(), abs=0.006)
        low, high = (float(x) for x in row["95% CI"].strip("[]").split(", "))
        ref = stats.bootstrap((diffs,), np.mean, method="percentile", n_resamples=10_000, rng=1)
        width = high - low
        assert low == pytest.approx(100 * ref.confidence_interval.low, abs=0.06 * width)
        assert high == pytest.approx(100 * ref.confidence_interval.high, abs=0.06 * width)
        assert ("°" in row["Δ vs #1"]) == (low <= 0 <= high)
        p_ref = stats.permutation_test(
            (diffs,),
            np.mean,
            permutation_type="samples",
            n_resamples=10_000,
            rng=1,
            vectorized=True,
        ).pvalue
        assert float(row["p"]) == pytest.approx(p_ref, abs=0.025)


def test_incomparable_results_are_listed_apart_with_the_reason(board_dir):
    out = board_dir / "leaderboards"
    faq = (out / "tasks" / "faq_en-test.md").read_text()
    ranked = md_table(faq, "| # |")
    assert not any("sampled" in r["result"] for r in ranked)  # the 20-query --limit sample
    assert "## Not comparable" not in faq  # a sample is listed as a sample, not as other data
    (sample,) = md_table(faq, "## Query samples (not ranked)")
    assert "sampled/text-small" in sample["result"]
    record = raw("sampled/text-small-dc3d9353/faq_en/test.json")
    assert sample["sample"] == f"query sample: limit {record['limit']}, seed {record['seed']}"
    assert sample["queries"] == "20" and sample["score"] == f"{100 * record['scores']['ndcg@10']:.2f}"
    docs = (out / "tasks" / "docs_en-test.md").read_text()
    assert [r["model"] for r in md_table(docs, "| # |")] == ["text-base", "text-small"]
    (row,) = md_table(docs, "## Not comparable")
    assert (
        row["model"] == "clip-b32"
        and "different K values ([1, 10] vs [1, 5, 10])" in row["why it is not in the table"]
    )
    overview = (out / "README.md").read_text()
    apart_rows = md_table(overview, "## Results not comparable")
    assert sorted(strip_link(r["task"]) for r in apart_rows) == ["docs_en", "faq_en"]
    assert {strip_link(r["task"]): r["reason"] for r in apart_rows}["faq_en"] == (
        "query sample: limit 20, seed 0"
    )


def test_overview_scores_and_suite_averages(board_dir):
    overview = (board_dir / "leaderboards" / "README.md").read_text()
    rows = {r["model"]: r for r in md_table(overview, "| model |")}
    faq_col = next(c for c in next(iter(rows.values())) if c.startswith("[faq_en"))
    docs_col = next(c for c in next(iter(rows.values())) if c.startswith("[docs_en"))
    for model, fp in (("text-small", "dc3d9353"), ("text-base", "5362cc99")):
        faq = raw(f"{model}-{fp}/faq_en/test.json")["scores"]["ndcg@10"]
        docs = raw(f"{model}-{fp}/docs_en/test.json")["scores"]["ndcg@10"]
        assert rows[model][faq_col].strip("*") == f"{100 * faq:.2f}"
        assert rows[model][docs_col].strip("*") == f"{100 * docs:.2f}"
        assert rows[model]["text-en avg"].strip("*") == f"{100 * (faq + docs) / 2:.2f}"
    # clip-b32's docs_en result is not comparable, so it has no docs_en score and no suite average.
    assert rows["clip-b32"][docs_col] == "" and rows["clip-b32"]["text-en avg"] == ""
    # The best of each column is bold, and only it.
    faq_scores = {m: float(r[faq_col].strip("*")) for m, r in rows.items() if r[faq_col]}
    assert [m for m, r in rows.items() if r[faq_col].startswith("**")] == [
        max(faq_scores, key=faq_scores.get)
    ]


def test_training_run_page_and_repeat_detection(board_dir):
    out = board_dir / "leaderboards"
    run = (out / "runs" / "text-small-faq.md").read_text()
    rows = md_table(run, "| metric |")
    base = raw("runs/text-small-faq/eval/zero_shot/text-small-dc3d9353/faq_en/test.json")
    tuned = raw("runs/text-small-faq/eval/fine_tuned/text-small-ft-fb51c191/faq_en/test.json")
    assert rows[0]["metric"] == "**ndcg@10**" and len(rows) == len(base["scores"])
    for row in rows:
        metric = row["metric"].strip("*")
        assert row["zero-shot"] == f"{100 * base['scores'][metric]:.2f}"
        assert row["fine-tuned"] == f"{100 * tuned['scores'][metric]:.2f}"
    faq = (out / "tasks" / "faq_en-test.md").read_text()
    (repeat,) = md_table(faq, "## Duplicates (shown once)")
    # The zero-shot copy inside the run folder repeats the top-level file, which is the one used.
    assert "runs/text-small-faq" in repeat["result"] and "runs/" not in repeat["used instead"]
    assert repeat["note"] == "identical scores" and repeat["shown as"] == "text-small"
    assert [r["model"] for r in md_table(faq, "| # |")].count("text-small") == 1


def test_comparison_table_golden_and_refusals(tmp_path):
    base = read_result_file(FIXTURES / "text-small-dc3d9353/faq_en/test.json").result
    tuned = read_result_file(
        FIXTURES / "runs/text-small-faq/eval/fine_tuned/text-small-ft-fb51c191/faq_en/test.json"
    ).result
    text = comparison_table(base, tuned)
    golden = GOLDEN / "compare_text-small_text-small-ft.md"
    if UPDATE:
        golden.write_text(text)
    assert text == golden.read_text()
    sampled = read_result_file(FIXTURES / "sampled/text-small-dc3d9353/faq_en/test.json").result
    with pytest.raises(VembedError, match="different data"):
        comparison_table(base, sampled)
    other_task = read_result_file(FIXTURES / "text-small-dc3d9353/docs_en/test.json").result
    assert "different task" in comparability_problem(base, other_task)
    # Same data fingerprint but a damaged query list: refused, not silently mis-paired.
    tuned.per_query.query_ids[0] = "not-a-query"
    with pytest.raises(VembedError, match="different queries"):
        comparison_table(base, tuned)


def test_matryoshka_convention_groups_dimensions_of_one_model():
    results = find_result_files(FIXTURES)
    items = [
        (
            f"{r.result.model}/{r.result.model_info['fingerprint']}",
            r.result.model,
            matryoshka_dim(r.result),
            r.result.embedding_dim,
            r.result.main_score,
        )
        for r in results
        if r.result.task == "faq_en" and r.result.limit is None
    ]
    curves = group_matryoshka(items)
    assert list(curves) == ["text-base"]
    expected = {64: "matryoshka/dim64", 128: "matryoshka/dim128", 256: "matryoshka/dim256", 768: ""}
    got = dict(curves["text-base"])
    assert sorted(got) == [64, 128, 256, 768]
    for dim, folder in expected.items():
        path = f"{folder}/text-base-5362cc99/faq_en/test.json".lstrip("/")
        assert got[dim] == raw(path)["scores"]["ndcg@10"]


def test_collect_skips_other_json_but_refuses_a_named_non_result(tmp_path):
    shutil.copytree(FIXTURES / "runs", tmp_path / "runs")
    (tmp_path / "runs" / "notes.json").write_text('{"hello": 1}')
    collection = collect(tmp_path)
    assert len(collection.results) == 2 and len(collection.runs) == 1
    assert [row["step"] for row in collection.runs[0].log][:3] == [0, 5, 10]
    with pytest.raises(VembedError, match="not a vembed-bench result file"):
        find_result_files(tmp_path / "runs" / "notes.json")
    bad_log = tmp_path / "train_log.jsonl"
    bad_log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2}\n')
    with pytest.raises(
        VembedError, match=r"train_log.jsonl:2: each line needs numeric 'step' and 'loss'"
    ):
        read_train_log(bad_log)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VembedError, match="no result files"):
        write_leaderboards([tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_label_clash_is_disambiguated_by_fingerprint(tmp_path):
    item = read_result_file(FIXTURES / "text-small-dc3d9353/faq_en/test.json")
    twin = read_result_file(FIXTURES / "text-small-dc3d9353/faq_en/test.json")
    twin.result.model_info = {**twin.result.model_info, "fingerprint": "ffff0000" + "0" * 56}
    twin.path = tmp_path / "twin.json"
    board = build_boards([item, twin])[0]
    labels = system_labels([item.result, twin.result])
    assert sorted(labels[system_key(e.result)] for e in board.entries) == [
        "text-small [dc3d9353]",
        "text-small [ffff0000]",
    ]


def test_a_limited_sample_never_heads_a_board_even_when_more_numerous(tmp_path):
    """Three --limit samples and one full-split run: the full run is the headline, the samples
    are listed apart with the reason (the complaint that made a 20-query sample the headline)."""
    full = read_result_file(FIXTURES / "text-small-dc3d9353/faq_en/test.json")
    samples = []
    for n, model in enumerate(("a", "b", "c")):
        item = read_result_file(FIXTURES / "text-small-dc3d9353/faq_en/test.json")
        item.result.model = model
        item.result.model_info = {**item.result.model_info, "fingerprint": f"{n:064d}"}
        item.result.limit = 20
        item.result.settings = {"limit": 20, "seed": 0}
        item.result.task_info = {**item.result.task_info, "data_fingerprint": "sample", "n_queries": 20}
        item.path = tmp_path / f"{model}.json"
        samples.append(item)
    board = build_boards([*samples, full])[0]
    assert [e.result.model for e in board.entries] == [full.result.model]
    assert board.apart == [] and sorted(s.result.model for s in board.samples) == ["a", "b", "c"]


def _variant(source: str, target: Path, **changes) -> Path:
    """A copy of a fixture result with some fields changed (``model_info`` merged), saved at
    ``target``; returns the path."""
    item = read_result_file(FIXTURES / source)
    result = item.result
    for name, value in changes.items():
        setattr(result, name, {**getattr(result, name), **value} if name == "model_info" else value)
    target.parent.mkdir(parents=True, exist_ok=True)
    return result.save(target)


def test_identical_results_collapse_into_one_row_and_are_listed_as_duplicates(tmp_path):
    """The full-width Matryoshka view and a renamed copy are the same result as text-base; a
    max-length change is not, even with equal scores, and it is named in the label."""
    root = tmp_path / "results"
    shutil.copytree(FIXTURES / "text-base-5362cc99", root / "text-base-5362cc99")
    source = "text-base-5362cc99/faq_en/test.json"
    _variant(source, root / "matryoshka/dim768/text-base-5362cc99/faq_en/test.json",
             model_info={"matryoshka_dim": 768})
    _variant(source, root / "copies/alias/faq_en/test.json", model="text-base-alias")
    fingerprint = raw(source)["model_info"]["fingerprint"]
    _variant(source, root / "copies/short/faq_en/test.json",
             model_info={"max_length": 128, "fingerprint": fingerprint[::-1]})
    out = tmp_path / "out"
    write_leaderboards([root], out, plots=False, html=False)

    faq = (out / "tasks" / "faq_en-test.md").read_text()
    rows = md_table(faq, "| # |")
    # Equal scores: both rank 1, ordered by label; neither copy of the same result is a row.
    assert [(r["#"], r["model"]) for r in rows] == [
        ("1", "text-base [max_length 128]"),
        ("1", "text-base [max_length 256]"),
    ]
    assert "short/" in rows[0]["result"] and "text-base-5362cc99/faq_en" in rows[1]["result"]
    duplicates = {r["model"]: r for r in md_table(faq, "## Duplicates (shown once)")}
    assert sorted(duplicates) == ["text-base (dim 768) [max_length 256]", "text-base-alias"]
    for row in duplicates.values():
        assert row["shown as"] == "text-base [max_length 256]"
        assert "text-base-5362cc99/faq_en/test.json" in row["used instead"]
        assert row["note"].endswith("identical scores")
    assert duplicates["text-base (dim 768) [max_length 256]"]["note"].startswith(
        "a Matryoshka view keeping all 768 dimensions is the full model"
    )
    # The overview has one row per distinct result: nothing bold twice for one number.
    overview = {r["model"]: r for r in md_table((out / "README.md").read_text(), "| model |")}
    assert sorted(overview) == ["text-base [max_length 128]", "text-base [max_length 256]"]
    faq_col = next(c for c in overview["text-base [max_length 256]"] if c.startswith("[faq_en"))
    assert overview["text-base [max_length 256]"]["[docs_en (ndcg@10)](tasks/docs_en-test.md)"]
    assert not overview["text-base [max_length 128]"]["[docs_en (ndcg@10)](tasks/docs_en-test.md)"]
    assert all(r[faq_col] == f"**{100 * raw(source)['scores']['ndcg@10']:.2f}**" for r in overview.values())


def test_a_setting_that_differs_between_rows_of_one_model_is_in_the_label(tmp_path):
    """A schema-2 result of text-small with mean pooling overridden to cls: both rows say which
    pooling they used, everywhere the label appears; a model without variants has no brackets."""
    root = tmp_path / "results"
    for folder in ("text-small-dc3d9353", "text-base-5362cc99"):
        shutil.copytree(FIXTURES / folder, root / folder)
    record = raw("text-small-dc3d9353/faq_en/test.json")
    _variant(
        "text-small-dc3d9353/faq_en/test.json",
        root / "text-small-dc3d9353/faq_en/test.pooling-cls.json",
        model_info={"pooling": "cls", "fingerprint": "c" * 64,
                    "weights_fingerprint": record["model_info"]["fingerprint"]},
        settings={"limit": None, "seed": None, "dim": None, "index": "flat", "maxsim": None,
                  "candidate_depth": None, "dtype": "float32", "encoder": {"pooling": "cls"}},
        settings_key="pooling-cls",
        scores={**record["scores"], "ndcg@10": record["scores"]["ndcg@10"] - 0.01},
    )
    out = tmp_path / "out"
    write_leaderboards([root], out, plots=False, html=False)
    faq = md_table((out / "tasks" / "faq_en-test.md").read_text(), "| # |")
    assert [r["model"] for r in faq] == [
        "text-base", "text-small [pooling mean]", "text-small [pooling cls]"
    ]
    docs = md_table((out / "tasks" / "docs_en-test.md").read_text(), "| # |")
    assert sorted(r["model"] for r in docs) == ["text-base", "text-small [pooling mean]"]
    overview = md_table((out / "README.md").read_text(), "| model |")
    assert sorted(r["model"] for r in overview) == [
        "text-base", "text-small [pooling cls]", "text-small [pooling mean]"
    ]
    csv_rows = (out / "tasks" / "faq_en-test.csv").read_text().splitlines()
    assert any(line.split(",")[1] == "text-small [pooling cls]" for line in csv_rows[1:])
