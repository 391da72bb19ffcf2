"""Published references on task cards: parsing, matching, ours-vs-published with an interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.test_runner import HashEncoder, _task
from vembed_bench.data.cards import read_card, resolve_card
from vembed_bench.data.references import find_reference, parse_references
from vembed_bench.errors import VembedError
from vembed_bench.evaluation import evaluate
from vembed_bench.report.references import compare, reference_lines


def _card(root: Path, task: Path, references: list[dict]) -> Path:
    card = root / "card.yaml"
    card.write_text(yaml.safe_dump({"name": "refs", "loader": "beir", "params": {"path": str(task)},
                                    "main_metric": "ndcg@10", "references": references}))
    return card


@pytest.mark.parametrize("raw, message", [
    ("oops", "key 'references' must be a list"),
    (["x"], r"references\[1\] must be a mapping"),
    ([{"model": "m", "scores": {"ndcg@10": 50}}], r"references\[1\]: missing key 'source'"),
    ([{"model": "m", "scores": {"ndcg@10": "high"}, "source": "s"}], "'scores' must map metric names to numbers"),
    ([{"model": "m", "scores": {"ndcg@10": 50}, "source": "s", "year": 2024}], "unknown key 'year'"),
    ([{"model": "m", "scores": {"ndcg@10": 50}, "source": "s", "scale": "permille"}], "scale 'permille'"),
])
def test_bad_references_are_refused_naming_the_card_and_entry(tmp_path, raw, message):
    card = tmp_path / "c.yaml"
    card.write_text(yaml.safe_dump({"name": "c", "loader": "beir", "params": {"path": "."}, "references": raw}))
    with pytest.raises(VembedError, match=message) as err:
        read_card(card)
    assert str(card.resolve()) in str(err.value) and "\n" not in str(err.value)


def test_shipped_cards_carry_the_published_numbers():
    (clip,) = parse_references(resolve_card("flickr30k_t2i").references, "t2i")
    assert clip.scores == pytest.approx({"hit@1": 0.5878, "hit@5": 0.8356, "hit@10": 0.9002})
    (clip_i2t,) = parse_references(resolve_card("flickr30k_i2t").references, "i2t")
    assert clip_i2t.scores["hit@10"] == pytest.approx(0.982)
    (qwen,) = parse_references(resolve_card("t2retrieval").references, "t2")
    assert qwen.scores == pytest.approx({"ndcg@10": 0.8368}) and qwen.split == "dev"
    (vlm2vec,) = parse_references(resolve_card("mmeb").references, "mmeb")
    assert vlm2vec.scores == pytest.approx({"overall": 0.601})
    assert find_reference([clip], ["ViT_B-32 OpenAI"], "test") is clip  # case and _/- blind, aliases
    assert find_reference([clip], ["openai/clip-vit-base-patch32"], "val") is None  # another split


def test_difference_and_interval_against_an_independent_bootstrap(tmp_path):
    from scipy import stats

    task = _task(tmp_path, "alpha")
    result = evaluate(str(task), HashEncoder("m", 1), results_dir=None, cache="off", show_progress=False)
    values = np.asarray(result.per_query.per_query["ndcg@10"])
    published = float(values.mean()) - 0.05
    (reference,) = parse_references([{"model": "m", "scores": {"ndcg@10": 100 * published}, "source": "s"}], "c")
    record = compare(result, reference, n_resamples=4000)
    (row,) = record["rows"]
    assert row["delta"] == pytest.approx(values.mean() - published, abs=1e-12)
    scipy_ci = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=4000,
                               random_state=np.random.default_rng(1)).confidence_interval
    assert row["ci_low"] == pytest.approx(scipy_ci.low - published, abs=0.03)
    assert row["ci_high"] == pytest.approx(scipy_ci.high - published, abs=0.03)
    assert row["verdict"] == ("reproduces" if row["ci_low"] <= 0 <= row["ci_high"] else "differs")
    # The published value equal to our mean always reproduces; far below it never does.
    same = parse_references([{"model": "m", "scores": {"ndcg@10": 100 * float(values.mean())}, "source": "s"}], "c")
    assert compare(result, same[0])["rows"][0]["verdict"] == "reproduces"
    low = parse_references([{"model": "m", "scores": {"ndcg@10": 0.0}, "source": "s"}], "c")
    assert compare(result, low[0])["rows"][0]["verdict"] == "differs"


def test_evaluation_records_and_prints_the_reference(tmp_path, capsys):
    task = _task(tmp_path, "alpha")
    card = _card(tmp_path, task, [{"model": "published/model", "aliases": ["hash-m"], "scores": {"ndcg@10": 50.0},
                                   "source": "a paper", "url": "https://example.org"}])
    named = evaluate(str(card), HashEncoder("hash-m", 1), results_dir=tmp_path / "res", cache="off",
                     show_progress=False)
    assert named.reference["model"] == "published/model" and named.reference["rows"][0]["published"] == 0.5
    stored = json.loads(named.default_path(tmp_path / "res").read_text())
    assert stored["reference"]["rows"][0]["ours"] == pytest.approx(named.scores["ndcg@10"])
    other = evaluate(str(card), HashEncoder("other", 1), results_dir=None, cache="off", show_progress=False)
    assert other.reference == {}
    flagged = evaluate(str(card), HashEncoder("other", 1), results_dir=None, cache="off", show_progress=False,
                       reference_model="published/model")
    assert flagged.reference["rows"][0]["metric"] == "ndcg@10"
    lines = reference_lines(flagged.reference)
    assert lines[0] == "published (published/model, a paper):"
    assert lines[1].startswith("  ndcg@10: published 50.00, ours ") and ("reproduces" in lines[1] or "differs" in lines[1])


def test_a_suite_reference_has_no_interval(tmp_path):
    first, second = _task(tmp_path, "first"), _task(tmp_path, "second", 5)
    for name, task in (("first", first), ("second", second)):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(
            {"name": f"suite_{name}", "loader": "beir", "params": {"path": str(task)}}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "both", "loader": "suite", "main_metric": "mean",
        "params": {"tasks": [str(tmp_path / "first.yaml"), str(tmp_path / "second.yaml")], "aggregate": "mean"},
        "references": [{"model": "m", "scores": {"mean": 40}, "source": "s"}]}))
    result = evaluate(str(suite), HashEncoder("m", 1), results_dir=None, cache="off", show_progress=False)
    (row,) = result.reference["rows"]
    assert row["ci_low"] is None and row["verdict"] == "no interval"
    assert row["delta"] == pytest.approx(result.scores["mean"] - 0.40)
