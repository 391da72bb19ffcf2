"""No input may give a silently wrong number or a traceback: a table of bad inputs, through the CLI.

Every case runs the real entry point (:func:`vembed_bench.cli.main`) in-process on a fresh
workspace and must end with exit code 2, exactly one ``error:`` line naming the culprit (file
and line, key, id or flag), no traceback, and nothing left behind: no result file, no run
folder, no temporary file, no results folder that was not there before. The loader-level
tables (``test_data_bad_inputs.py``, ``test_train_bad_inputs.py``) check the messages of
single readers; this one checks what a user sees from each command, for task folders, task and
benchmark cards, flags, recipes, model folders and the files the report commands read.

A sweep where only some pairs fail exits 1 and writes the others; a corrupted embedding cache
is not an error at all: it heals with one warning line per bad entry (none for a bad encode
manifest, which is only a shortcut) and the score of a fresh encode, checked against an
independent computation (sentence-transformers called directly, numpy search, nDCG by hand).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
import yaml

from tests.conftest import write_beir
from tests.fault_helpers import (
    error_line,
    independent_ndcg,
    independent_ranks,
    leftovers,
    message_lines,
    run_cli,
    snapshot,
    warning_lines,
)
from vembed_bench.data.data_root import ENV_VAR

N_DOCS, N_QUERIES = 12, 6
COMMON = ("--results-dir", "{ws}/res", "--cache-dir", "{ws}/cache", "--device", "cpu", "--no-progress")


# -- the workspace -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """One tiny random sentence-transformers model for the whole module (read-only here)."""
    pytest.importorskip("sentence_transformers")
    from tests.train_helpers import tiny_st_folder

    return tiny_st_folder(tmp_path_factory.mktemp("tiny"))


WORDS = ("apple river stone cloud paper green music window tiger lamp orange silver forest coffee bridge "
         "rocket garden planet mirror violin").split()


def toy_task(folder: Path) -> Path:
    """Twelve documents of six random words; each query shares one word with its document, so the
    tiny random model ranks imperfectly (nDCG@10 about 0.5) and two such models score differently."""
    rng = np.random.default_rng(1)
    docs = [" ".join(rng.choice(WORDS, 6)) for _ in range(N_DOCS)]
    queries = [" ".join([rng.choice(docs[i].split()), *rng.choice(WORDS, 3)]) for i in range(N_QUERIES)]
    return write_beir(folder, [{"_id": f"d{i}", "text": text} for i, text in enumerate(docs)],
                      [{"_id": f"q{i}", "text": text} for i, text in enumerate(queries)],
                      {"test": [(f"q{i}", f"d{i}", 1) for i in range(N_QUERIES)]})


@pytest.fixture(scope="module")
def expected_ndcg(model: Path, tmp_path_factory) -> float:
    """nDCG@10 of the tiny model on the toy task, computed without vembed_bench."""
    return independent_ndcg(model, toy_task(tmp_path_factory.mktemp("toy") / "toy"))


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path) -> SimpleNamespace:
    """A workspace: a good BEIR task, a good task card beside it, a data root, the tiny model; the cwd.
    (The model is built once for the module; only the cases that get that far load it.)"""
    toy_task(tmp_path / "toy")
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "c.yaml").write_text(f"name: c\nloader: beir\nparams: {{path: {tmp_path / 'toy'}}}\n")
    (tmp_path / "root").mkdir()
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))  # --data-root changes it: restored after the test
    monkeypatch.setenv("VEMBED_TASKS_DIR", str(tmp_path / "no-tasks-here"))
    monkeypatch.chdir(tmp_path)
    return SimpleNamespace(root=tmp_path, task=tmp_path / "toy", card=tmp_path / "cards" / "c.yaml",
                           model=model)


# -- building bad files ---------------------------------------------------------------------------------
Prepare = Callable[[SimpleNamespace], None]


def write(relative: str, content: str | bytes) -> Prepare:
    def prepare(w: SimpleNamespace) -> None:
        path = w.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_fill(content, w).encode() if isinstance(content, str) else content)

    return prepare


def remove(relative: str) -> Prepare:
    def prepare(w: SimpleNamespace) -> None:
        path = w.root / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink()

    return prepare


def folder(relative: str) -> Prepare:
    """Replace a file by a folder of the same name."""
    def prepare(w: SimpleNamespace) -> None:
        path = w.root / relative
        path.unlink(missing_ok=True)
        path.mkdir(parents=True)

    return prepare


def card(text: str) -> Prepare:
    """The task card ``cards/c.yaml`` with this content ({task} is the good BEIR folder)."""
    def prepare(w: SimpleNamespace) -> None:
        w.card.write_text(text.format(task=w.task))

    return prepare


def both(*steps: Prepare) -> Prepare:
    def prepare(w: SimpleNamespace) -> None:
        for step in steps:
            step(w)

    return prepare


def jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def model_copy(change: Callable[[Path], None] | None = None) -> Prepare:
    """``m/``: a copy of the tiny model with ``change`` applied to it."""
    def prepare(w: SimpleNamespace) -> None:
        shutil.copytree(w.model, w.root / "m")
        if change is not None:
            change(w.root / "m")

    return prepare


def in_model(name: str, content: bytes | Callable[[bytes], bytes] | None) -> Callable[[Path], None]:
    def change(m: Path) -> None:
        path = m / name
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content(path.read_bytes()) if callable(content) else content)

    return change


def result_file(record: Any, name: str = "r.json") -> Prepare:
    """A result file whose JSON content is ``record`` (bytes are written as they are)."""
    return write(name, record if isinstance(record, bytes) else json.dumps(record))


def recipe(changes: dict[str, Any] | None = None, text: str | bytes | None = None) -> Prepare:
    """``project/recipe.yaml``: a valid recipe on the tiny model (with ``changes``), or raw text."""
    def prepare(w: SimpleNamespace) -> None:
        (w.root / "project").mkdir(exist_ok=True)
        (w.root / "project" / "pairs.jsonl").write_text(
            jsonl(*({"query": f"question {i}", "positive": f"answer {i}"} for i in range(4))))
        path = w.root / "project" / "recipe.yaml"
        if text is not None:
            path.write_bytes(text.encode() if isinstance(text, str) else text)
            return
        data = {"name": "r", "output_dir": str(w.root / "runs"),
                "model": {"path": str(w.model), "max_length": 32},
                "data": {"train": "pairs.jsonl"},
                "training": {"epochs": 1, "batch_size": 2, "logger": "none", "bf16": False}}
        for dotted, value in (changes or {}).items():
            node = data
            *sections, last = dotted.split(".")
            for section in sections:
                node = node.setdefault(section, {})
            node[last] = json.loads(_fill(json.dumps(value), w))
        path.write_text(yaml.safe_dump(data))

    return prepare


# -- the cases ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    """The command line; ``{ws}`` is the workspace, ``{task}`` the good BEIR folder, ``{card}`` the card,
    ``{model}`` the tiny model, ``{m}`` the model copy a ``prepare`` step made. ``eval`` gets COMMON."""
    expect: tuple[str, ...]
    """Fragments of the one error line (formatted like ``args``)."""
    prepare: Prepare | None = None
    usage: bool = False
    warnings: int = 0
    common: bool = True


def ev(*args: str) -> tuple[str, ...]:
    return ("eval", "-t", "{task}", "-m", "{model}", *args)


def tradeoffs(*args: str) -> tuple[str, ...]:
    return ("tradeoffs", "-t", "{task}", "-m", "{model}", "--results-dir", "{ws}/res", "--cache-dir",
            "{ws}/cache", "--device", "cpu", *args)


CORPUS = "toy/corpus.jsonl"
QUERIES = "toy/queries.jsonl"
QRELS = "toy/qrels/test.tsv"
HEAD = "query-id\tcorpus-id\tscore\n"
DOCS = [{"_id": f"d{i}", "text": f"document number {i}"} for i in range(N_DOCS)]
ASKS = [{"_id": f"q{i}", "text": f"topic {i}"} for i in range(N_QUERIES)]

TASK_FOLDERS = [
    Case("corpus-missing", ev(), ("{task}", "no corpus.jsonl"), remove(CORPUS)),
    Case("corpus-is-a-folder", ev(), ("{task}", "no corpus.jsonl"), folder(CORPUS)),
    Case("queries-missing", ev(), ("{task}/queries.jsonl not found",), remove(QUERIES)),
    Case("queries-is-a-folder", ev(), ("{task}/queries.jsonl",), folder(QUERIES)),
    Case("qrels-folder-missing", ev(), ("{task}/qrels/test.tsv not found",), remove("toy/qrels")),
    Case("split-not-there", ev("--split", "dev"), ("has no split 'dev'", "splits: test")),
    Case("split-escaping", ev("--split", "../toy/qrels/test"), ("split '../toy/qrels/test'",)),
    Case("corpus-empty", ev(), ("corpus.jsonl: the corpus is empty",), write(CORPUS, "")),
    Case("corpus-blank-lines", ev(), ("corpus.jsonl: the corpus is empty",), write(CORPUS, "\n \n\n")),
    Case("queries-empty", ev(), ("test.tsv:2: unknown query-id 'q0'",), write(QUERIES, "")),
    Case("qrels-header-only", ev(), ("test.tsv: no query has a relevant document",), write(QRELS, HEAD)),
    Case("qrels-all-grades-zero", ev(), ("test.tsv: no query has a relevant document",),
         write(QRELS, HEAD + "".join(f"q{i}\td{i}\t0\n" for i in range(N_QUERIES))), warnings=1),
    Case("corpus-binary-garbage", ev(), ("corpus.jsonl:1: invalid UTF-8",),
         write(CORPUS, bytes(range(128, 256)) * 4)),
    Case("corpus-nul-in-string", ev(), ("corpus.jsonl:2: invalid JSON",),
         write(CORPUS, jsonl(DOCS[0]) + '{"_id": "d1", "text": "a\x00b"}\n')),
    Case("corpus-line-is-a-string", ev(), ("corpus.jsonl:3: expected a JSON object, got str",),
         write(CORPUS, jsonl(*DOCS[:2], '"just text"'))),
    Case("corpus-id-nan", ev(), ("corpus.jsonl:1: field '_id' must be a string or an integer",),
         write(CORPUS, '{"_id": NaN, "text": "x"}\n')),
    Case("corpus-truncated-last-line", ev(), ("corpus.jsonl:12: invalid JSON",),
         write(CORPUS, jsonl(*DOCS[:11]) + '{"_id": "d11", "te')),
    Case("queries-duplicate-id", ev(), ("queries.jsonl:7: duplicate _id 'q0' (first on line 1)",),
         write(QUERIES, jsonl(*ASKS, ASKS[0]))),
    Case("queries-id-empty", ev(), ("queries.jsonl:2: field '_id' is empty",),
         write(QUERIES, jsonl(ASKS[0], {"_id": "", "text": "x"}))),
    Case("queries-image-missing", ev(), ("queries.jsonl:1: image 'img/q0.png' not found",),
         write(QUERIES, jsonl({"_id": "q0", "image": "img/q0.png"}, *ASKS[1:]))),
    Case("corpus-image-escaping", ev(), ("corpus.jsonl:1: image path '../../etc/hostname' is outside",),
         write(CORPUS, jsonl({"_id": "d0", "image": "../../etc/hostname"}, *DOCS[1:]))),
    Case("corpus-image-absolute", ev(), ("corpus.jsonl:1: image path '/etc/hostname' is outside",),
         write(CORPUS, jsonl({"_id": "d0", "image": "/etc/hostname"}, *DOCS[1:]))),
    Case("qrels-unknown-doc", ev(), ("test.tsv:3: unknown corpus-id 'd99'",),
         write(QRELS, HEAD + "q0\td0\t1\nq1\td99\t1\n")),
    Case("qrels-grade-fraction", ev(), ("test.tsv:2: score '0.5'",), write(QRELS, HEAD + "q0\td0\t0.5\n")),
    Case("qrels-five-columns", ev(), ("test.tsv:2: expected 3 tab-separated columns",),
         write(QRELS, HEAD + "q0\t0\td0\t1\textra\n")),
    Case("qrels-not-utf8", ev(), ("test.tsv:2: invalid UTF-8",), write(QRELS, HEAD.encode() + b"q0\td\xe90\t1\n")),
    Case("qrels-duplicate-pair", ev(), ("test.tsv:3: duplicate judgement of query-id 'q0'",),
         write(QRELS, HEAD + "q0\td0\t1\nq0\td0\t2\n")),
    Case("task-is-a-file", ("eval", "-t", "{task}/corpus.jsonl", "-m", "{model}"),
         ("unknown task '{task}/corpus.jsonl'",)),
    Case("task-folder-missing", ("eval", "-t", "{ws}/nowhere", "-m", "{model}"), ("unknown task '{ws}/nowhere'",)),
    Case("task-empty-string", ("eval", "-t", "", "-m", "{model}"), ("--task is given an empty value",)),
    Case("task-list-file-missing", ("eval", "-t", "@{ws}/tasks.txt", "-m", "{model}"),
         ("--task @{ws}/tasks.txt: cannot read the list file",)),
    Case("task-list-names-bad-one", ("eval", "-t", "@{ws}/tasks.txt", "-m", "{model}"), ("unknown task 'nope'",),
         write("tasks.txt", "{task}\nnope\n".replace("{task}", "toy"))),
]

CARDS = [
    Case("card-missing", ("eval", "-t", "{ws}/cards/none.yaml", "-m", "{model}"),
         ("task card {ws}/cards/none.yaml does not exist",)),
    Case("card-invalid-yaml", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}:3: invalid YAML",),
         card("name: c\nloader: [beir\n")),
    Case("card-a-list", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: a task card must be a YAML mapping",),
         card("- name: c\n")),
    Case("card-empty", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: a task card must be a YAML mapping",),
         card("")),
    Case("card-unknown-key", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: unknown key 'lodaer'",),
         card("name: c\nlodaer: beir\n")),
    Case("card-no-name", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: missing required key 'name'",),
         card("loader: beir\n")),
    Case("card-no-loader", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: missing required key 'loader'",),
         card("name: c\n")),
    Case("card-name-a-list", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'name'",),
         card("name: [c]\nloader: beir\n")),
    Case("card-unknown-loader", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: unknown loader 'csv'",),
         card("name: c\nloader: csv\nparams: {{path: {task}}}\n")),
    Case("card-params-a-number", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'params'",),
         card("name: c\nloader: beir\nparams: 5\n")),
    Case("card-no-params-path", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: a 'beir' card needs params.path",),
         card("name: c\nloader: beir\n")),
    Case("card-path-missing", ("eval", "-t", "{card}", "-m", "{model}"),
         ("dataset folder {task}/../gone does not exist",),
         card("name: c\nloader: beir\nparams: {{path: {task}/../gone}}\n")),
    Case("card-path-escaping", ("eval", "-t", "{card}", "-m", "{model}"),
         ("{card}: params.path '../toy' resolves outside the card's folder",),
         card("name: c\nloader: beir\nparams: {{path: ../toy}}\n")),
    Case("card-splits-empty", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'splits'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nsplits: []\n")),
    Case("card-k-zero", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'k_values'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nk_values: [0, 10]\n")),
    Case("card-k-a-string", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'k_values'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nk_values: '10'\n")),
    Case("card-k-fraction", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'k_values'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nk_values: [1.5]\n")),
    Case("card-main-metric-not-computed", ("eval", "-t", "{card}", "-m", "{model}"),
         ("main metric 'ndcg@7' is not computed for k values [1, 5, 10]",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nk_values: [1, 5, 10]\nmain_metric: ndcg@7\n")),
    Case("card-main-metric-unknown", ("eval", "-t", "{card}", "-m", "{model}"), ("main metric 'accuracy'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nmain_metric: accuracy\n")),
    Case("card-exclude-self-a-word", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'exclude_self'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nexclude_self: sometimes\n")),
    Case("card-limit-zero", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'limit'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nlimit: 0\n")),
    Case("card-limit-a-word", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'limit'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\nlimit: ten\n")),
    Case("card-aliases-a-string", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}: key 'aliases'",),
         card("name: c\nloader: beir\nparams: {{path: {task}}}\naliases: cc\n")),
    Case("card-not-utf8", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}:2: invalid UTF-8",),
         write("cards/c.yaml", b"name: c\ndescription: caf\xe9\nloader: beir\n")),
    Case("card-suite-without-members", ("eval", "-t", "{card}", "-m", "{model}"), ("{card}",),
         card("name: c\nloader: suite\n")),
    Case("tasks-list-with-a-bad-card", ("tasks",), ("{ws}/tasks/bad.yaml", "unknown key 'lodaer'"),
         write("tasks/bad.yaml", "name: bad\nlodaer: beir\n")),
]

BENCHMARKS = [
    Case("bench-missing", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"),
         ("benchmark card {ws}/b.yaml does not exist",)),
    Case("bench-invalid-yaml", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml:3: invalid YAML",),
         write("b.yaml", "name: b\ntasks: [toy\n")),
    Case("bench-a-list", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: a benchmark card must be",),
         write("b.yaml", "- toy\n")),
    Case("bench-unknown-key", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: unknown key 'task'",),
         write("b.yaml", "name: b\ntask: [toy]\n")),
    Case("bench-no-name", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: key 'name'",),
         write("b.yaml", "tasks: [toy]\n")),
    Case("bench-tasks-empty", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: key 'tasks'",),
         write("b.yaml", "name: b\ntasks: []\n")),
    Case("bench-tasks-a-string", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: key 'tasks'",),
         write("b.yaml", "name: b\ntasks: toy\n")),
    Case("bench-unknown-task", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"),
         ("{ws}/b.yaml:4: benchmark 'b' names task 'nope'", "unknown task 'nope'"),
         write("b.yaml", "name: b\ntasks:\n  - toy\n  - nope\n")),
    Case("bench-task-with-a-bad-card", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"),
         ("{ws}/b.yaml:2: benchmark 'b' names task '{card}'", "unknown key 'lodaer'"),
         both(write("b.yaml", "name: b\ntasks: [{ws}/cards/c.yaml]\n"), card("name: c\nlodaer: x\n"))),
    Case("bench-not-utf8", ("eval", "-b", "{ws}/b.yaml", "-m", "{model}"), ("{ws}/b.yaml: not UTF-8",),
         write("b.yaml", b"name: b\ndescription: caf\xe9\ntasks: [toy]\n")),
]

FLAGS = [
    Case("k-zero", ev("--k", "0"), ("--k '0' must be comma-separated positive integers",)),
    Case("k-words", ev("--k", "a,b"), ("--k 'a,b'",)),
    Case("k-empty", ev("--k", ""), ("--k ''",)),
    Case("k-negative", ev("--k", "1,-5"), ("--k '1,-5'",)),
    Case("k-fraction", ev("--k", "1.5"), ("--k '1.5'",)),
    Case("k-without-main-metric", ev("--k", "1,5"), ("main metric 'ndcg@10' is not computed for k values [1, 5]",)),
    Case("dims-zero", ev("--dims", "0"), ("--dims '0'",)),
    Case("dims-words", ev("--dims", "half"), ("--dims 'half'",)),
    Case("batch-size-zero", ev("--batch-size", "0"), ("--batch-size 0 must be a positive integer",)),
    Case("batch-size-negative", ev("--batch-size", "-8"), ("--batch-size -8",)),
    Case("batch-size-a-word", ev("--batch-size", "many"), ("--batch-size many must be a positive integer or auto",)),
    Case("candidate-depth-zero", ev("--candidate-depth", "0"), ("--candidate-depth 0",)),
    Case("limit-fraction", ev("--limit", "1.5"), ("'--limit'",), usage=True),
    Case("seed-a-word", ev("--seed", "x"), ("'--seed'",), usage=True),
    Case("cache-policy-unknown", ev("--cache", "maybe"), ("--cache 'maybe' is not a policy",)),
    Case("maxsim-unknown", ev("--maxsim", "approx"), ("--maxsim 'approx' is not one of",)),
    Case("maxsim-faiss-on-dense", ev("--maxsim", "faiss"), ("--maxsim faiss applies to multi-vector",)),
    Case("max-length-zero", ev("--max-length", "0"), ("--max-length 0 must be a positive integer",)),
    Case("image-workers-negative", ev("--image-workers", "-1"), ("--image-workers -1",)),
    Case("attention-unknown", ev("--attention", "sideways"), ("--attention 'sideways' is not one of",)),
    Case("padding-side-unknown", ev("--padding-side", "up"), ("--padding-side 'up' is not one of",)),
    Case("attention-on-a-text-encoder", ev("--attention", "causal"), ("attention do not apply",)),
    Case("pooling-on-sentence-transformers", ev("--model-type", "sentence-transformers", "--pooling", "cls"),
         ("pooling is fixed by the sentence-transformers",)),
    Case("backend-unknown", ev("--backend", "quantum"), ("quantum",)),
    Case("index-unknown", ev("--index", "NoSuchIndex,Flat"), ("NoSuchIndex,Flat",)),
    Case("index-on-numpy", ev("--backend", "numpy", "--index", "hnsw"), ("hnsw",)),
    Case("model-type-unknown", ev("--model-type", "frobnicator"), ("unknown model type 'frobnicator'",)),
    Case("dtype-unknown", ev("--dtype", "float8"), ("float8",)),
    Case("device-unknown", ev("--device", "tpu"), ("--device 'tpu' is not a device",), common=False),
    Case("device-garbled", ev("--device", "cpu:x"), ("--device 'cpu:x' is not a device",), common=False),
    Case("main-metric-unknown", ev("--main-metric", "f1@10"), ("main metric 'f1@10'",)),
    Case("query-prompt-unknown-field", ev("--query-prompt", "{question}: {text}"),
         ("--query-prompt '{question}: {text}' has an unknown field {question}",)),
    Case("document-prompt-misspelt-field", ev("--document-prompt", "passage: {Text}"),
         ("--document-prompt 'passage: {Text}' has an unknown field {Text}",)),
    Case("overwrite-only-cache-nothing-stored", ev("--overwrite-strategy", "only-cache"),
         ("no stored result at {ws}/res/", "only-cache")),
    Case("results-dir-is-a-file", ev("--results-dir", "{ws}/taken", "--device", "cpu"),
         ("{ws}/taken is a file, not a folder",), write("taken", "x"), common=False),
    Case("cache-dir-is-a-file", ev("--cache-dir", "{ws}/taken", "--results-dir", "{ws}/res"),
         ("{ws}/taken is a file, not a folder",), write("taken", "x"), common=False),
    Case("model-list-empty", ("eval", "-t", "{task}", "-m", "@{ws}/models.txt"), ("missing --model",),
         write("models.txt", "# nothing yet\n")),
    Case("model-empty-string", ("eval", "-t", "{task}", "-m", ""), ("--model is given an empty value",)),
    Case("model-is-a-file", ("eval", "-t", "{task}", "-m", "{task}/corpus.jsonl"),
         ("model path {task}/corpus.jsonl is a file",)),
    Case("leaderboard-path-missing", ("leaderboard", "{ws}/nowhere", "-o", "{ws}/lb"),
         ("{ws}/nowhere does not exist",)),
    Case("leaderboard-resamples-zero", ("leaderboard", "{ws}", "-o", "{ws}/lb", "--resamples", "0"),
         ("--resamples must be >= 1",)),
    Case("leaderboard-suite-malformed", ("leaderboard", "{ws}", "-o", "{ws}/lb", "--suite", "text"),
         ("--suite 'text' must look like NAME=TASK1,TASK2",)),
    Case("compare-resamples-zero", ("compare", "{ws}/a.json", "{ws}/b.json", "--resamples", "0"),
         ("--resamples must be >= 1",)),
    Case("compare-file-missing", ("compare", "{ws}/a.json", "{ws}/b.json"), ("{ws}/a.json: cannot read result file",)),
    Case("diff-file-missing", ("diff", "{ws}/a.json", "{ws}/b.json"), ("{ws}/a.json: cannot read result file",)),
    Case("diff-top-negative", ("diff", "{ws}/a.json", "{ws}/b.json", "--top", "-1"), ("--top -1",)),
    Case("prepare-unknown-kind", ("prepare", "cifar", "-o", "{ws}/out"), ("unknown dataset kind 'cifar'",)),
    Case("prepare-without-source", ("prepare", "sop", "-o", "{ws}/out"), ("prepare sop needs SOURCE",)),
    Case("prepare-source-missing", ("prepare", "imagefolder", "{ws}/photos", "-o", "{ws}/out"), ("{ws}/photos",)),
    Case("prepare-karpathy-garbage", ("prepare", "flickr30k", "{ws}/dataset_x.json", "-o", "{ws}/out"),
         ("{ws}/dataset_x.json",), write("dataset_x.json", "{not json")),
    Case("merge-adapter-missing", ("merge", "{ws}/adapter", "--base", "{model}", "-o", "{ws}/merged"),
         ("{ws}/adapter is not a LoRA adapter folder",)),
    Case("merge-out-not-empty", ("merge", "{ws}/adapter", "--base", "{model}", "-o", "{ws}/toy"),
         ("{ws}/toy already exists and is not empty",), write("adapter/adapter_config.json", "{}")),
    Case("tradeoffs-precision-unknown", tradeoffs("--precisions", "float32,int4"),
         ("--precisions: unknown precision 'int4'",)),
    Case("tradeoffs-index-unknown", tradeoffs("--indexes", "flat,ivf9"), ("--indexes: unknown index 'ivf9'",)),
    Case("tradeoffs-precisions-empty", tradeoffs("--precisions", ","), ("--precisions is empty",)),
    Case("tradeoffs-dims-a-word", tradeoffs("--dims", "half"), ("--dims 'half' is not a dimension",)),
    Case("tradeoffs-dims-wider-than-the-model", tradeoffs("--dims", "1000"),
         ("--dims 1000 is larger than the model's 32 dimensions",)),
    Case("tradeoffs-factory-refused", tradeoffs("--factory", "PQ5"), ("--factory 'PQ5': faiss.index_factory refuses it",)),
    Case("tradeoffs-factory-with-a-space", tradeoffs("--factory", "HNSW32, SQ8"),
         ("--factory 'HNSW32, SQ8' is not a faiss index_factory string",)),
    Case("tradeoffs-latency-queries-zero", tradeoffs("--latency-queries", "0"),
         ("--latency-queries 0 must be a positive integer",)),
    Case("tradeoffs-warmup-negative", tradeoffs("--warmup", "-1"), ("--warmup -1",)),
    Case("tradeoffs-batch-size-a-word", tradeoffs("--batch-size", "lots"),
         ("--batch-size lots must be a positive integer or auto",)),
    Case("leaderboard-empty-folder", ("leaderboard", "{ws}/empty", "-o", "{ws}/lb"),
         ("no result files found under {ws}/empty",), folder("empty")),
    Case("merge-base-missing", ("merge", "{ws}/adapter", "--base", "{ws}/nobase", "-o", "{ws}/merged"),
         ("--base {ws}/nobase is not a model folder",), write("adapter/adapter_config.json", "{}")),
]

RECIPE = "{ws}/project/recipe.yaml"
RECIPES = [
    Case("recipe-missing", ("train", "{ws}/nowhere.yaml"), ("recipe {ws}/nowhere.yaml does not exist",)),
    Case("recipe-is-a-folder", ("train", "{ws}/project"), ("recipe {ws}/project does not exist",), recipe()),
    Case("recipe-a-list", ("train", RECIPE), (RECIPE, "a recipe is a mapping"), recipe(text="- name: r\n")),
    Case("recipe-not-utf8", ("train", RECIPE), (RECIPE, "UTF-8"), recipe(text=b"name: r\ndescription: caf\xe9\n")),
    Case("recipe-a-number", ("train", RECIPE), (RECIPE, "a recipe is a mapping"), recipe(text="42\n")),
    Case("set-unknown-key", ("train", RECIPE, "--set", "training.lrr=1"), ("unknown key 'training.lrr'",), recipe()),
    Case("set-wrong-type", ("train", RECIPE, "--set", "training.epochs=abc"),
         ("'training.epochs' must be an integer",), recipe()),
    Case("set-into-a-value", ("train", RECIPE, "--set", "name.sub=1"),
         ("cannot set 'name.sub'", "'name' is not a section"),
         recipe()),
    Case("set-no-key", ("train", RECIPE, "--set", "=5"), ("--set '=5' must look like key.subkey=value",), recipe()),
    Case("temperature-zero", ("train", RECIPE, "--dry-run"), ("'loss.temperature' must be > 0",),
         recipe({"loss.temperature": 0})),
    Case("max-steps-zero", ("train", RECIPE, "--dry-run"), ("'training.max_steps' must be >= 1",),
         recipe({"training.max_steps": 0})),
    Case("lora-rank-zero", ("train", RECIPE, "--dry-run"), ("'lora.r' must be >= 1",), recipe({"lora.r": 0})),
    Case("max-length-zero-in-recipe", ("train", RECIPE, "--dry-run"), ("'model.max_length' must be >= 1",),
         recipe({"model.max_length": 0})),
    Case("eval-limit-zero", ("train", RECIPE, "--dry-run"), ("'eval.limit' must be >= 1",), recipe({"eval.limit": 0})),
    Case("schedule-unknown", ("train", RECIPE, "--dry-run"), ("'training.schedule' is 'zigzag'",),
         recipe({"training.schedule": "zigzag"})),
    Case("logger-unknown", ("train", RECIPE, "--dry-run"), ("'training.logger' is 'stdout'",),
         recipe({"training.logger": "stdout"})),
    Case("gradcache-chunk-zero", ("train", RECIPE, "--dry-run"), ("'training.gradcache_chunk' must be >= 1",),
         recipe({"training.gradcache_chunk": 0})),
    Case("gradcache-chunk-a-word", ("train", RECIPE, "--dry-run"), ("'training.gradcache_chunk'",),
         recipe({"training.gradcache_chunk": "lots"})),
    Case("guard-task-unknown", ("train", RECIPE), ("'eval.guard_tasks[0]'", "nope"),
         recipe({"eval.guard_tasks": ["nope"]})),
    Case("guard-task-also-an-eval-task", ("train", RECIPE, "--dry-run"), ("'eval.guard_tasks[0]'",),
         recipe({"eval.tasks": ["{ws}/toy"], "eval.guard_tasks": ["{ws}/toy"]})),
    Case("csv-without-positive-column", ("train", RECIPE), ("rows.csv",),
         both(recipe({"data.train": "rows.csv"}), write("project/rows.csv", "query,answer\nq,a\n"))),
    Case("csv-header-only", ("train", RECIPE), ("rows.csv",),
         both(recipe({"data.train": "rows.csv"}), write("project/rows.csv", "query,positive\n"))),
    Case("beir-train-split-missing", ("train", RECIPE), ("task 'toy' has no split 'train'",),
         recipe({"data.train": "{ws}/toy", "data.split": "train"})),
    Case("eval-task-broken-card", ("train", RECIPE), ("{card}", "unknown key 'lodaer'"),
         both(recipe({"eval.tasks": ["{ws}/cards/c.yaml"]}), card("name: c\nlodaer: x\n"))),
]


def _weights(m: Path) -> Path:
    return m / "model.safetensors"


MODELS = [
    Case("model-folder-empty", ("eval", "-t", "{task}", "-m", "{ws}/empty"),
         ("cannot tell what kind of model {ws}/empty",),
         folder("empty")),
    Case("model-config-garbage", ("eval", "-t", "{task}", "-m", "{ws}/hf"), ("{ws}/hf/config.json: invalid JSON",),
         write("hf/config.json", "{model_type: bert")),
    Case("model-config-a-list", ("eval", "-t", "{task}", "-m", "{ws}/hf"), ("cannot tell what kind of model {ws}/hf",),
         write("hf/config.json", "[1, 2]")),
    Case("model-config-not-utf8", ("eval", "-t", "{task}", "-m", "{ws}/hf"), ("{ws}/hf/config.json",),
         write("hf/config.json", b'{"model_type": "b\xe9rt"}')),
    Case("model-type-unknown-architecture", ("eval", "-t", "{task}", "-m", "{ws}/hf"), ("{ws}/hf",),
         write("hf/config.json", json.dumps({"model_type": "frobnicator", "architectures": ["FrobModel"]}))),
    Case("model-modules-json-garbage", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}/modules.json",),
         model_copy(in_model("modules.json", b"[{oops"))),
    Case("model-weights-truncated", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("model.safetensors", lambda b: b[: len(b) // 2]))),
    Case("model-weights-garbage", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("model.safetensors", os.urandom(4096)))),
    Case("model-weights-empty", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("model.safetensors", b""))),
    Case("model-weights-missing", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("model.safetensors", None))),
    Case("model-config-json-garbage-in-st", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}/config.json",),
         model_copy(in_model("config.json", b"{]"))),
    Case("model-config-wrong-size", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("config.json", lambda b: b.replace(b'"hidden_size": 32', b'"hidden_size": 48')))),
    Case("model-tokenizer-garbage", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}",),
         model_copy(in_model("tokenizer.json", b"{not a tokenizer"))),
    Case("model-pooling-config-garbage", ("eval", "-t", "{task}", "-m", "{m}"), ("{m}/1_Pooling/config.json",),
         model_copy(in_model("1_Pooling/config.json", b"{oops"))),
    Case("model-sentence-bert-config-garbage", ("eval", "-t", "{task}", "-m", "{m}"),
         ("{m}/sentence_bert_config.json",), model_copy(in_model("sentence_bert_config.json", b"{oops"))),
]

_RESULT_KEYS = {"task": "t", "split": "test", "model": "m", "scores": {}, "per_query": {}, "main_metric": "ndcg@10"}
RESULT_FILES = [
    Case("compare-not-json", ("compare", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json:1: not valid JSON",),
         result_file(b"{not json")),
    Case("compare-a-list", ("compare", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json: not a vembed-bench result file",),
         result_file([1, 2])),
    Case("compare-not-utf8", ("compare", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json",),
         result_file(b'{"task": "\xe9"}')),
    Case("compare-damaged", ("compare", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json: damaged result file",),
         result_file({**_RESULT_KEYS, "schema_version": 2})),
    Case("compare-per-query-a-string", ("compare", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json",),
         result_file({**_RESULT_KEYS, "per_query": "oops", "schema_version": 2})),
    Case("diff-not-json", ("diff", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json: cannot read result file",),
         result_file(b"{not json")),
    Case("diff-a-list", ("diff", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json",), result_file([1, 2])),
    Case("diff-not-utf8", ("diff", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json",), result_file(b'{"task": "\xe9"}')),
    Case("diff-missing-keys", ("diff", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json",),
         result_file({"schema_version": 2})),
    Case("diff-schema-unknown", ("diff", "{ws}/r.json", "{ws}/r.json"), ("{ws}/r.json: unsupported result schema 99",),
         result_file({**_RESULT_KEYS, "schema_version": 99})),
    Case("leaderboard-result-damaged", ("leaderboard", "{ws}/r.json", "-o", "{ws}/lb"),
         ("{ws}/r.json: damaged result file",), result_file({**_RESULT_KEYS, "schema_version": 2})),
    Case("leaderboard-comparison-garbage", ("leaderboard", "{ws}/run", "-o", "{ws}/lb"),
         ("{ws}/run/comparison.json: cannot read comparison file",), write("run/comparison.json", "{oops")),
    Case("leaderboard-comparison-not-utf8", ("leaderboard", "{ws}/run", "-o", "{ws}/lb"),
         ("{ws}/run/comparison.json",), write("run/comparison.json", b'{"pairs": [], "name": "\xe9"}')),
    Case("leaderboard-comparison-pair-missing", ("leaderboard", "{ws}/run", "-o", "{ws}/lb"),
         ("{ws}/run/comparison.json: pair 1 base result 'a.json' does not exist",),
         write("run/comparison.json", json.dumps({"pairs": [{"base": "a.json", "tuned": "b.json"}]}))),
    Case("leaderboard-train-log-not-utf8", ("leaderboard", "{ws}/run", "-o", "{ws}/lb"),
         ("{ws}/run/train_log.jsonl",),
         both(write("run/comparison.json", json.dumps({"pairs": []})),
              write("run/train_log.jsonl", b'{"step": 1, "loss": 0.5}\n{"step": 2, "loss": "\xe9"}\n'))),
    Case("eval-stored-result-damaged", ev(), ("test.json",), None),  # the stored result is written by the test
]

CASES = TASK_FOLDERS + CARDS + BENCHMARKS + FLAGS + RECIPES + MODELS + RESULT_FILES


def _fill(text: str, w: SimpleNamespace) -> str:
    return (text.replace("{ws}", str(w.root)).replace("{task}", str(w.task)).replace("{card}", str(w.card))
            .replace("{model}", str(w.model)).replace("{m}", str(w.root / "m")))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case: Case, ws, model, monkeypatch, capsys):
    if case.prepare is not None:
        case.prepare(ws)
    if case.id == "eval-stored-result-damaged":
        _store_damaged_result(ws, monkeypatch, capsys)
    args = [_fill(a, ws) for a in case.args]
    if args[0] == "eval" and case.common:
        args += [_fill(a, ws) for a in COMMON]
    before = snapshot(ws.root)
    run = run_cli(monkeypatch, capsys, *args)
    assert run.code == 2, (run.out, run.err)
    line = error_line(run.err, warnings=case.warnings, usage=case.usage)
    for fragment in case.expect:
        assert _fill(fragment, ws) in line, line
    assert leftovers(ws.root, before, ignore=["cache"]) == []
    assert not (ws.root / "res").exists() or case.id == "eval-stored-result-damaged"
    assert not (ws.root / "runs").exists()


def _store_damaged_result(ws, monkeypatch, capsys) -> None:
    """A complete run, then its result file replaced by a JSON list: the next run must say so."""
    args = [_fill(a, ws) for a in (*ev(), *COMMON)]
    assert run_cli(monkeypatch, capsys, *args).code == 0
    (stored,) = (ws.root / "res").rglob("test.json")
    stored.write_text("[1, 2, 3]")


def test_the_table_is_big_and_every_case_is_named_once():
    assert len(CASES) >= 100 and len({c.id for c in CASES}) == len(CASES)


# -- a sweep where some pairs fail: exit 1, the others written ------------------------------------------
SWEEPS = [
    ("broken-task-beside-a-good-one", ["-t", "{task}", "-t", "{ws}/broken", "-m", "{model}"],
     both(lambda w: toy_task(w.root / "broken"), write("broken/corpus.jsonl", b"\xff\n")), 1,
     "corpus.jsonl:1: invalid UTF-8"),
    ("card-with-missing-data-beside-a-good-task", ["-t", "{task}", "-t", "{card}", "-m", "{model}"],
     card("name: c\nloader: beir\nparams: {{path: {task}/../gone}}\n"), 1, "dataset folder"),
    ("model-with-garbage-weights-beside-a-good-one", ["-t", "{task}", "-m", "{model}", "-m", "{m}"],
     model_copy(in_model("model.safetensors", lambda b: b[: len(b) // 3])), 1, "{m}"),
]


@pytest.mark.parametrize("name, args, prepare, good, reason", SWEEPS, ids=[s[0] for s in SWEEPS])
def test_a_sweep_with_failing_pairs_exits_1_and_writes_the_others(name, args, prepare, good, reason, ws,
                                                                   expected_ndcg, monkeypatch, capsys):
    prepare(ws)
    run = run_cli(monkeypatch, capsys, "eval", *[_fill(a, ws) for a in args], "--json",
                  *[_fill(a, ws) for a in COMMON])
    assert run.code == 1 and "Traceback" not in run.err, run.err
    record = json.loads(run.out)
    failed = [p for p in record["pairs"] if p["status"] == "failed"]
    computed = [p for p in record["pairs"] if p["status"] == "computed"]
    assert len(failed) == 1 and _fill(reason, ws) in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert len(computed) == good and all(Path(p["path"]).is_file() for p in computed)
    written = sorted((ws.root / "res").rglob("*.json"))
    assert written == sorted(Path(p["path"]) for p in computed)
    for pair in computed:
        assert json.loads(Path(pair["path"]).read_text())["scores"]["ndcg@10"] == pytest.approx(
            expected_ndcg, abs=1e-6)
    assert not list(ws.root.rglob("*.tmp"))


def test_dims_wider_than_the_model_fail_alone_and_the_other_sizes_are_written(ws, expected_ndcg, monkeypatch,
                                                                              capsys):
    """--dims 16,64 on a 32-d model: the full size and 16 are computed and kept; 64 fails (exit 1)."""
    run = run_cli(monkeypatch, capsys, *[_fill(a, ws) for a in (*ev("--dims", "16,64"), *COMMON)])
    assert run.code == 1 and "Traceback" not in run.err, run.err
    failed = [line for line in message_lines(run.err) if line.startswith("failed")]
    assert len(failed) == 1 and "(dim 64)" in failed[0] and "--dims 64 is larger than the model's 32" in failed[0]
    written = {p.name: json.loads(p.read_text()) for p in (ws.root / "res").rglob("*.json")}
    assert sorted(written) == ["test.dim16.json", "test.json"]
    assert written["test.json"]["scores"]["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-6)
    assert written["test.dim16.json"]["embedding_dim"] == 16


# -- a corrupted cache heals: one warning, the right score ------------------------------------------------
def test_a_stored_result_without_the_asked_metrics_is_computed_again(ws, model, monkeypatch, capsys):
    """--k and --main-metric are not part of a result's identity (its file name), so the stored
    result of a pair may lack them; reusing it reported its own main metric as the asked one."""
    assert run_cli(monkeypatch, capsys, *[_fill(a, ws) for a in (*ev(), *COMMON)]).code == 0
    run = run_cli(monkeypatch, capsys, *[_fill(a, ws) for a in (*ev("--k", "1,3", "--main-metric", "recall@3"),
                                                                 *COMMON)], "--json")
    assert run.code == 0, run.err
    record = json.loads(run.out)
    assert record["status"] == "computed" and record["main_metric"] == "recall@3"
    assert record["main_score"] == pytest.approx(float(np.mean(independent_ranks(model, ws.task) <= 3)))
    again = run_cli(monkeypatch, capsys, *[_fill(a, ws) for a in (*ev("--k", "1,3", "--main-metric", "recall@3"),
                                                                   *COMMON)], "--json")
    assert json.loads(again.out)["status"] == "reused"  # now it does answer the question


def _entries(cache: Path) -> dict[str, Path]:
    """The two embedding entries of a run, by role (from their meta.json)."""
    found = {}
    for meta in (cache / "embeddings").glob("*/*/meta.json"):
        found[json.loads(meta.read_text())["info"]["role"]] = meta.parent
    return found


def _manifests(cache: Path) -> list[Path]:
    return sorted((cache / "embeddings" / "manifests").glob("*.json"))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


def _reverse_rows(path: Path) -> None:
    np.save(path, np.load(path)[::-1].copy())  # a valid .npy of the same size, rows in another order


def _swap_entry_files(cache: Path) -> None:
    entries = _entries(cache)
    a, b = entries["query"] / "embeddings.npy", entries["document"] / "embeddings.npy"
    data_a = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data_a)


def _manifest_of_another_model(cache: Path, evaluate_other: Callable[[], None]) -> None:
    """The manifest file of our run now holds the manifest of another model on the same task (a
    file copied over another, as in the entry corruptions): its keys name verified entries of
    that model, so trusting it would give that model's score under our model's name."""
    ours = _manifests(cache)
    evaluate_other()
    (theirs,) = [p for p in _manifests(cache) if p not in ours]
    ours[0].write_bytes(theirs.read_bytes())


def _entry_file(role: str, change: Callable[[Path], None]) -> Callable[[Path, Any], None]:
    return lambda cache, _: change(_entries(cache)[role] / "embeddings.npy")


HEALS = [  # (name, change(cache folder, evaluate another model), warning lines expected)
    ("documents-truncated", _entry_file("document", _truncate), 1),
    ("queries-byte-flipped", _entry_file("query", _flip_last_byte), 1),
    ("documents-rows-reversed", _entry_file("document", _reverse_rows), 1),
    ("documents-emptied", _entry_file("document", lambda p: p.write_bytes(b"")), 1),
    ("documents-meta-garbled", lambda c, _: (_entries(c)["document"] / "meta.json").write_text("{oops"), 1),
    ("queries-meta-deleted", lambda c, _: (_entries(c)["query"] / "meta.json").unlink(), 1),
    ("query-and-document-files-swapped", lambda c, _: _swap_entry_files(c), 2),
    ("manifest-garbled", lambda c, _: _manifests(c)[0].write_text("{oops"), 0),
    ("manifest-of-another-model", _manifest_of_another_model, 0),
    ("stale-temporary-file", lambda c, _: (_entries(c)["document"] / ".embeddings.npy.x1y2.tmp").write_bytes(
        bytes(64)), 0),
]


@pytest.mark.parametrize("name, corrupt, warnings", HEALS, ids=[h[0] for h in HEALS])
def test_a_corrupted_cache_heals_with_its_warnings_and_the_right_score(name, corrupt, warnings, ws, model,
                                                                      expected_ndcg, monkeypatch, capsys,
                                                                      tmp_path_factory):
    """Not an error: the bad entry is named in one warning line, encoded again, and the score is
    the one an independent computation gives; the next run is a clean full hit."""
    cache = ws.root / "cache"

    def evaluate(results: str, *more: str, source: Path = model) -> Any:
        return run_cli(monkeypatch, capsys, "eval", "-t", str(ws.task), "-m", str(source), "--cache-dir", str(cache),
                       "--results-dir", str(ws.root / results), "--device", "cpu", "--no-progress", *more)

    def evaluate_other() -> None:
        from tests.train_helpers import tiny_st_folder

        other = tiny_st_folder(tmp_path_factory.mktemp("other"), seed=7)
        assert evaluate("res-other", source=other).code == 0

    assert evaluate("res1").code == 0
    corrupt(cache, evaluate_other)
    run = evaluate("res2", "--json")
    assert run.code == 0 and "Traceback" not in run.err, run.err
    warned = warning_lines(run.err)
    assert len(warned) == warnings, run.err
    assert all("embedding cache entry" in line and str(cache) in line for line in warned), warned
    record = json.loads(run.out)
    assert record["main_score"] == pytest.approx(expected_ndcg, abs=1e-6)
    assert json.loads(Path(record["path"]).read_text())["scores"]["ndcg@10"] == record["main_score"]
    assert not list(cache.rglob("*.tmp")) or name == "stale-temporary-file"  # a hit leaves it be
    again = evaluate("res3", "--json")
    assert again.code == 0 and warning_lines(again.err) == []  # healed: a clean, full hit
    stored = json.loads(Path(json.loads(again.out)["path"]).read_text())
    assert stored["cache"]["hits"] == 2 and stored["cache"]["misses"] == 0
    assert stored["scores"]["ndcg@10"] == record["main_score"]


def test_the_counts_of_the_suite():
    """Bad inputs tried: the refusal table, the sweeps (and --dims) and the healed caches."""
    assert len(CASES) + len(SWEEPS) + 1 + len(HEALS) >= 100
