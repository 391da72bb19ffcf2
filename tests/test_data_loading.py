"""Task loading, query sampling and the data fingerprints, checked field by field.

The fingerprints key the embedding cache and the result identity, so every input that changes
what is scored (items, qrels, exclude_self, candidate lists) must change them and nothing else
may; their exact format is pinned against an independent hashlib computation, because a silent
format change would orphan every cache entry.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import write_beir

from vembed_bench.data import loading
from vembed_bench.data.beir import load_beir
from vembed_bench.data.cards import TaskCard
from vembed_bench.data.loading import data_fingerprint, items_fingerprint, load_task, sample_queries
from vembed_bench.data.types import Item, TaskData
from vembed_bench.errors import VembedError


@pytest.fixture
def ten(tmp_path):
    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(10)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(10)]
    return write_beir(tmp_path / "ten", corpus, queries, {"test": [(f"q{i}", f"d{i}", 1) for i in range(10)],
                                                          "dev": [("q0", "d0", 1)]})


def _card(root, **changes) -> TaskCard:
    return replace(TaskCard(name="ten", loader="beir", params={"path": str(root)}, splits=["test", "dev"]), **changes)


def _expected_sample(n: int, limit: int, seed: int) -> list[int]:
    """The documented draw: numpy's generator, ``limit`` of ``n`` without replacement, in order."""
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())


def test_load_task_samples_with_the_seed_and_the_card_limit(ten):
    ids = [f"q{i}" for i in range(10)]
    assert [q.id for q in load_task(_card(ten)).queries] == ids  # the card's first split, every query
    drawn = [q.id for q in load_task(_card(ten), limit=4).queries]
    assert drawn == [ids[i] for i in _expected_sample(10, 4, 0)]  # seed 0 by default
    assert [q.id for q in load_task(_card(ten), limit=4, seed=7).queries] == [ids[i] for i in _expected_sample(10, 4, 7)]
    assert [q.id for q in load_task(_card(ten, limit=3)).queries] == [ids[i] for i in _expected_sample(10, 3, 0)]
    assert len(load_task(_card(ten, limit=3), limit=5).queries) == 5  # an explicit limit wins
    assert [q.id for q in load_task(_card(ten), "dev").queries] == ["q0"]


def test_load_task_messages(ten):
    with pytest.raises(VembedError) as err:
        load_task(_card(ten, loader="suite", name="all"))
    assert str(err.value) == ("task 'all' is a suite of several tasks, not one task; evaluate it with "
                              "`vembed-bench eval --task all` or vembed_bench.evaluate()")
    with pytest.raises(VembedError) as err:
        load_task(_card(ten), "train")
    assert str(err.value) == "task 'ten' has no split 'train'; splits: test, dev"
    with pytest.raises(VembedError) as err:
        load_task(_card(ten, loader="nope", path="/cards/ten.yaml"))
    known = ", ".join(sorted(loading.LOADERS.names()))
    assert str(err.value) == f"/cards/ten.yaml: unknown loader 'nope'; known: {known}"
    assert {"beir", "sop", "karpathy", "mmeb", "mteb"} <= set(loading.LOADERS.names())
    with pytest.raises(VembedError, match=r"^ten: unknown loader 'nope'; known: "):
        load_task(_card(ten, loader="nope"))


def test_lazy_loaders_are_imported_on_first_use(ten, tmp_path, monkeypatch):
    (tmp_path / "fake_loaders_mod.py").write_text(
        "from vembed_bench.data.beir import load_beir\n"
        "def fake(card, split):\n"
        "    return load_beir(card.params['path'], split, name='from-fake')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_loaders_mod", raising=False)
    loading.LOADERS.lazy("fake", "fake_loaders_mod:fake")
    try:
        assert "fake_loaders_mod" not in sys.modules  # registering imported nothing
        assert load_task(_card(ten, loader="fake")).name == "from-fake"
        assert "fake_loaders_mod" in sys.modules
    finally:
        loading.LOADERS.remove("fake")


def _data_with_candidates(ten) -> TaskData:
    data = load_beir(ten, "test", exclude_self=True)
    data.candidates = {q.id: [f"d{i}", f"d{(i + 1) % 10}"] for i, q in enumerate(data.queries)}
    data.meta["extra"] = 1
    return data


def test_sample_queries_keeps_every_other_field(ten):
    data = _data_with_candidates(ten)
    data.skipped_queries = 2
    sample = sample_queries(data, 3, 11)
    kept = _expected_sample(10, 3, 11)
    assert [q.id for q in sample.queries] == [f"q{i}" for i in kept]
    assert sample.qrels == {f"q{i}": {f"d{i}": 1} for i in kept}
    assert sample.candidates == {f"q{i}": [f"d{i}", f"d{(i + 1) % 10}"] for i in kept}
    assert (sample.name, sample.split, sample.root, sample.exclude_self, sample.skipped_queries) == (
        "ten", "test", ten.resolve(), True, 2)
    assert sample.corpus is data.corpus
    assert sample.meta == {**data.meta, "limit": 3, "limit_seed": 11}
    assert sample_queries(data, 10, 11) is data and sample_queries(data, 11, 11) is data
    assert sample_queries(load_beir(ten, "test"), 3, 0).candidates is None


def _image_items(tmp_path) -> list[Item]:
    (tmp_path / "a.png").write_bytes(b"image bytes")
    return [Item(id="i1", text="t", title="T", instruction="I"), Item(id="i2", image=tmp_path / "a.png")]


def test_items_fingerprint_format_is_stable(tmp_path):
    items = _image_items(tmp_path)
    digest = hashlib.sha256()
    digest.update(json.dumps(["i1", "T", "t", "I", None]).encode() + b"\n")
    image_sha = hashlib.sha256(b"image bytes").hexdigest()
    digest.update(json.dumps(["i2", "", "", "", {"sha256": image_sha}]).encode() + b"\n")
    assert items_fingerprint(items) == digest.hexdigest()


@pytest.mark.parametrize("field", ["id", "title", "text", "instruction"])
def test_every_item_field_changes_the_items_fingerprint(tmp_path, field):
    items = _image_items(tmp_path)
    changed = [replace(items[0], **{field: "other"}), items[1]]
    assert items_fingerprint(changed) != items_fingerprint(items)


def test_data_fingerprint_follows_options_not_dict_order(ten):
    data = _data_with_candidates(ten)
    base = data_fingerprint(data)
    shuffled = replace(data, qrels=dict(reversed(list(data.qrels.items()))),
                       candidates=dict(reversed(list(data.candidates.items()))))
    assert data_fingerprint(shuffled) == base  # the same judgements in another order
    assert data_fingerprint(replace(data, exclude_self=False)) != base
    assert data_fingerprint(replace(data, candidates=None)) != base
    assert data_fingerprint(replace(data, candidates={**data.candidates, "q0": ["d5"]})) != base
    assert data_fingerprint(replace(data, qrels={**data.qrels, "q0": {"d0": 2}})) != base
