"""Bad input to ``vembed-bench train``: one ``error:`` line on stderr, exit code 2, no traceback,
and nothing left behind (no ``runs/<name>``, nothing new anywhere in the workspace).

Each table case writes a recipe into a fresh workspace and runs the CLI entry point
``vembed_bench.cli.main`` in-process, as a user's shell would. Validation cases that do
not depend on the files use ``--dry-run``; the others run the real command, which must
refuse them before it creates the run folder (its model is an empty folder, so a case
that got past the checks would fail loudly while loading it, not pass by accident). The
tests at the end make the folder first (a tiny random BERT) and check that it is removed
again, or kept when a checkpoint exists.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from vembed_bench.data.data_root import ENV_VAR

sys.path.insert(0, str(Path(__file__).parent))  # train_helpers
PAIRS = [{"query": f"question {i}", "positive": f"answer {i}"} for i in range(4)]


def _jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 40, 40)).save(path)
    return path


def _workspace(tmp: Path) -> None:
    """project/ (the recipe's folder), root/ (the data root), outside/ (neither)."""
    for base in ("project", "root", "outside"):
        _jsonl(tmp / base / "data" / "pairs.jsonl", PAIRS)
        _png(tmp / base / "data" / "img" / "a.png")
        (tmp / base / "model").mkdir()


def _base_recipe(tmp: Path) -> dict[str, Any]:
    return {
        "name": "bad",
        "output_dir": str(tmp / "out"),
        "model": {"path": "model", "type": "sentence-transformers"},
        "data": {"train": "data/pairs.jsonl"},
        "training": {"epochs": 1, "batch_size": 2, "logger": "none"},
    }


def _apply(recipe: dict[str, Any], changes: dict[str, Any], tmp: Path) -> dict[str, Any]:
    for dotted, value in changes.items():
        node = recipe
        *sections, last = dotted.split(".")
        for section in sections:
            node = node.setdefault(section, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value.format(tmp=tmp) if isinstance(value, str) else value
    return recipe


DELETE = object()


@dataclass(frozen=True)
class Case:
    id: str
    changes: dict[str, Any]
    expect: tuple[str, ...]
    """Substrings of the one error line; ``{tmp}`` is the workspace, ``{recipe}`` the file."""
    dry_run: bool = False
    args: tuple[str, ...] = ()
    prepare: Callable[[Path], None] | None = None
    """Extra files or changes in the workspace before the run."""
    recipe_text: str | None = None
    """Raw recipe text instead of the dumped dict (broken YAML)."""
    data_root: bool = True
    skip_as_root: bool = False


def _write(path: Path, data: bytes) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / path).write_bytes(data)

    return prepare


def _symlink(link: str, target: str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        (tmp / link).symlink_to(tmp / target)

    return prepare


def _readonly_out(tmp: Path) -> None:
    (tmp / "out").mkdir()
    os.chmod(tmp / "out", 0o500)


GOOD = b'{"query": "q", "positive": "p"}\n'

CASES = [
    # -- the recipe's keys, types and values (--dry-run: nothing on disk matters) --------------
    Case("unknown-top-key", {"trainng": {"lr": 0.1}}, ("{recipe}", "unknown key 'trainng'"), True),
    Case("unknown-nested-key", {"training.lrr": 0.1}, ("unknown key 'training.lrr'",), True),
    Case("lr-not-a-number", {"training.lr": "fast"}, ("'training.lr' must be a number",), True),
    Case("epochs-not-an-integer", {"training.epochs": "two"},
         ("'training.epochs' must be an integer",), True),
    Case("negative-lr", {"training.lr": -0.001}, ("'training.lr' must be > 0",), True),
    Case("negative-epochs", {"training.epochs": -1}, ("'training.epochs' must be >= 1",), True),
    Case("zero-batch-size", {"training.batch_size": 0},
         ("'training.batch_size' must be >= 1",), True),
    Case("gradcache-chunk-a-word", {"training.gradcache_chunk": "many"},
         ("'training.gradcache_chunk' must be >= 1 or auto when set, got 'many'",), True),
    Case("gradcache-chunk-zero", {"training.gradcache_chunk": 0},
         ("'training.gradcache_chunk' must be >= 1 when set, got 0",), True),
    Case("gradcache-chunk-a-list", {"training.gradcache_chunk": [8]},
         ("'training.gradcache_chunk' must be an integer or a string, got list [8]",), True),
    Case("warmup-ratio-above-one", {"training.warmup_ratio": 1.5},
         ("'training.warmup_ratio' must be in [0, 1)",), True),
    Case("unknown-loss", {"loss.name": "hinge"}, ("'loss.name' is 'hinge'",), True),
    Case("section-not-a-mapping", {"training": 5}, ("'training' must be a section",), True),
    Case("model-path-missing", {"model.path": DELETE}, ("'model.path' is required",), True),
    Case("data-train-missing", {"data.train": DELETE}, ("'data.train' is required",), True),
    Case("name-with-slash", {"name": "a/b"}, ("'name' must be a non-empty folder name",), True),
    Case("matryoshka-weights-mismatch",
         {"loss.matryoshka_dims": [16, 8], "loss.matryoshka_weights": [1.0]},
         ("'loss.matryoshka_weights' has 1 weights for 2 dims",), True),
    Case("broken-yaml", {}, ("{recipe}", "invalid YAML"), True, recipe_text="model: [unclosed\n"),
    Case("set-without-value", {}, ("--set 'training.epochs' must look like key.subkey=value",),
         True, args=("--set", "training.epochs")),
    # -- paths that leave their root (refused by --dry-run too: the recipe is wrong) ----------
    Case("data-root-dotdot", {"data.train": "@data_root/../outside/data/pairs.jsonl"},
         ("{recipe}", "'data.train'", "@data_root/../outside/data/pairs.jsonl",
          "outside the data root {tmp}/root"), True),
    Case("image-root-climbs-to-slash", {"data.image_root": "@data_root/../../.."},
         ("{recipe}", "'data.image_root'", "outside the data root"), True),
    Case("data-root-symlink-out", {"data.train": "@data_root/link.jsonl"},
         ("'data.train'", "@data_root/link.jsonl", "resolves to {tmp}/outside/data/pairs.jsonl"),
         True, prepare=_symlink("root/link.jsonl", "outside/data/pairs.jsonl")),
    Case("image-root-symlink-out", {"data.image_root": "@data_root/imgs"},
         ("'data.image_root'", "@data_root/imgs", "outside the data root"), True,
         prepare=_symlink("root/imgs", "outside/data/img")),
    Case("relative-image-root-above-recipe", {"data.image_root": ".."},
         ("{recipe}", "'data.image_root'", "above the recipe folder"), True),
    Case("relative-image-root-far-above", {"data.image_root": "data/../../../.."},
         ("'data.image_root'", "above the recipe folder"), True),
    Case("model-path-dotdot", {"model.path": "@data_root/../outside/model"},
         ("'model.path'", "@data_root/../outside/model", "outside the data root"), True),
    Case("image-tower-dotdot",
         {"model.type": "composed", "model.path": DELETE, "model.text_tower": "model",
          "model.image_tower": "@data_root/../outside/model", "model.projection_dim": 8},
         ("'model.image_tower'", "outside the data root"), True),
    Case("processor-dotdot", {"model.processor": "@data_root/../outside/model"},
         ("'model.processor'", "outside the data root"), True),
    # -- files and rows (the real command: refused before the run folder exists) -------------
    Case("data-file-missing", {"data.train": "data/nowhere.jsonl"},
         ("{recipe}", "'data.train'", "{tmp}/project/data/nowhere.jsonl", "does not exist")),
    Case("row-missing-positive", {"data.train": "data/rows.jsonl"},
         ("{tmp}/project/data/rows.jsonl:2", "'positive'"),
         prepare=_write(Path("project/data/rows.jsonl"), GOOD + b'{"query": "q"}\n')),
    Case("non-utf8-jsonl", {"data.train": "data/rows.jsonl"},
         ("{tmp}/project/data/rows.jsonl:2", "invalid UTF-8", "0xff"),
         prepare=_write(Path("project/data/rows.jsonl"), GOOD + b'{"query": "q\xff", "positive": "p"}\n')),
    Case("non-utf8-csv", {"data.train": "data/rows.csv"},
         ("{tmp}/project/data/rows.csv:3", "invalid UTF-8", "0xfe"),
         prepare=_write(Path("project/data/rows.csv"), b"query,positive\nq,p\nq\xfe,p\n")),
    Case("invalid-json-line", {"data.train": "data/rows.jsonl"},
         ("{tmp}/project/data/rows.jsonl:2", "invalid JSON"),
         prepare=_write(Path("project/data/rows.jsonl"), GOOD + b"{oops\n")),
    Case("row-not-an-object", {"data.train": "data/rows.jsonl"},
         ("rows.jsonl:1", "expected a JSON object"),
         prepare=_write(Path("project/data/rows.jsonl"), b'["q", "p"]\n')),
    Case("empty-data-file", {"data.train": "data/rows.jsonl"},
         ("{recipe}", "'data.train' data/rows.jsonl has no examples"),
         prepare=_write(Path("project/data/rows.jsonl"), b"\n")),
    Case("unsupported-file-type", {"data.train": "data/rows.txt"},
         ("rows.txt", "unsupported training file type"),
         prepare=_write(Path("project/data/rows.txt"), GOOD)),
    Case("image-path-escapes-image-root", {"data.train": "data/rows.jsonl"},
         ("rows.jsonl:1", "../../outside/data/img/a.png", "outside the dataset root"),
         prepare=_write(Path("project/data/rows.jsonl"),
                        b'{"query_image": "../../outside/data/img/a.png", "label": "x"}\n')),
    Case("images-for-a-text-model", {"data.train": "data/rows.jsonl"},
         ("{recipe}", "'data.train'", "image inputs", "embeds only text"),
         prepare=_write(Path("project/data/rows.jsonl"),
                        b'{"query_image": "img/a.png", "label": "x"}\n')),
    Case("image-root-not-a-folder", {"data.image_root": "data/no_images"},
         ("{recipe}", "'data.image_root'", "{tmp}/project/data/no_images is not a folder")),
    Case("model-path-missing-folder", {"model.path": "{tmp}/nowhere/model"},
         ("{recipe}", "model.path {tmp}/nowhere/model does not exist",)),
    Case("model-type-untrainable", {"model.type": "bm25"}, ("model.type 'bm25' cannot be trained",)),
    Case("composed-tower-missing",
         {"model.type": "composed", "model.path": DELETE, "model.text_tower": "model",
          "model.image_tower": "no_tower", "model.projection_dim": 8},
         ("{recipe}", "model.image_tower no_tower", "does not exist")),
    Case("eval-task-unknown", {"eval.tasks": ["no_such_task"]},
         ("{recipe}", "'eval.tasks[0]'", "unknown task 'no_such_task'")),
    Case("data-root-not-set", {"data.train": "@data_root/data/pairs.jsonl"},
         ("{recipe}", "'data.train' @data_root/data/pairs.jsonl", "--data-root"), data_root=False),
    Case("output-dir-under-a-file", {"output_dir": "{tmp}/project/data/pairs.jsonl/runs"},
         ("{recipe}", "'output_dir'", "{tmp}/project/data/pairs.jsonl is a file")),
    Case("output-dir-not-writable", {}, ("{recipe}", "'output_dir'", "permission denied"),
         prepare=_readonly_out, skip_as_root=True),
    Case("run-folder-is-a-file", {}, ("run folder {tmp}/out/bad is a file",),
         prepare=_write(Path("out/bad"), b"")),
    Case("run-folder-exists", {}, ("run folder {tmp}/out/bad already exists", "--overwrite"),
         prepare=_write(Path("out/bad/config.yaml"), b"name: bad\n")),
    Case("resume-without-run", {}, ("--resume: run folder {tmp}/out/bad does not exist",),
         args=("--resume",)),
    Case("resume-without-checkpoint", {}, ("--resume: no checkpoint in {tmp}/out/bad/checkpoints",),
         args=("--resume",), prepare=_write(Path("out/bad/config.yaml"), b"name: bad\n")),
    Case("resume-and-overwrite", {}, ("--resume and --overwrite contradict",),
         args=("--resume", "--overwrite")),
]


def _snapshot(tmp: Path) -> set[Path]:
    return {p.relative_to(tmp) for p in tmp.rglob("*")}


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str]) -> tuple[int, str, str]:
    """``vembed-bench ARGS`` in this process: (exit code, stdout, stderr)."""
    from vembed_bench.cli import main

    monkeypatch.setattr(sys, "argv", ["vembed-bench", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str, *, model_loaded: bool = False) -> str:
    """The one line of ``err``; with ``model_loaded``, the stage messages of the evaluation that ran
    before the failure (loading, encoding, searching) and progress bars are dropped first."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    if model_loaded:
        stage = re.compile(r"^(loading model|encoding \d+|searching \d+|embeddings of) ")
        lines = [line for line in lines if line.strip() and not re.search(r"\d+%\|.*it/s\]", line)
                 and not stage.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _workspace(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))  # restored after the test
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _recipe_file(ws: Path, recipe: dict[str, Any] | None = None, text: str | None = None) -> Path:
    path = ws / "project" / "recipe.yaml"
    path.write_text(text if text is not None else yaml.safe_dump(recipe), encoding="utf-8")
    return path


def test_the_base_recipe_is_valid(ws, monkeypatch, capsys):
    """The control: every case below fails because of its one change, not the base recipe."""
    recipe = _recipe_file(ws, _base_recipe(ws))
    code, out, err = _main(monkeypatch, capsys, ["train", str(recipe), "--dry-run"])
    assert code == 0, err
    assert "recipe OK (inputs found)" in out
    from vembed_bench.train.flow import resolve_recipe
    from vembed_bench.train.preflight import preflight

    assert len(preflight(resolve_recipe(recipe))) == len(PAIRS)  # the real checks pass too
    assert not (ws / "out").exists()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(case: Case, ws, monkeypatch, capsys):
    if case.skip_as_root and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    if not case.data_root:
        monkeypatch.delenv(ENV_VAR)
    if case.prepare:
        case.prepare(ws)
    recipe = _recipe_file(ws, _apply(_base_recipe(ws), case.changes, ws), case.recipe_text)
    before = _snapshot(ws)
    args = ["train", str(recipe), *case.args, *(["--dry-run"] if case.dry_run else [])]
    code, out, err = _main(monkeypatch, capsys, args)
    assert code == 2, (out, err)
    line = _one_error_line(err)
    for expected in case.expect:
        assert expected.format(tmp=ws, recipe=recipe) in line, line
    assert _snapshot(ws) == before  # no run folder, no config.yaml, nothing else either
    assert out == ""


def test_there_are_enough_cases():
    assert len(CASES) >= 30 and len({case.id for case in CASES}) == len(CASES)


# -- the run folder exists before the failure ------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    from train_helpers import tiny_st_folder

    return tiny_st_folder(tmp_path_factory.mktemp("tiny"))


def _tiny_recipe(ws: Path, tiny: Path, **changes: Any) -> Path:
    recipe = _base_recipe(ws)
    recipe["output_dir"] = str(ws / "out" / "nested")  # made by the run: removed with it
    recipe["model"] = {"path": str(tiny), "type": "sentence-transformers", "max_length": 32}
    recipe["training"].update(batch_size=4, bf16=False)
    return _recipe_file(ws, _apply(recipe, changes, ws))


def test_a_failure_after_the_folder_is_made_removes_it_and_frees_the_name(
    ws, tiny, monkeypatch, capsys
):
    recipe = _tiny_recipe(ws, tiny, **{"model.freeze": ["no.such.parameter"]})
    before = _snapshot(ws)
    code, _, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress"])
    assert code == 2
    line = _one_error_line(err, model_loaded=True)
    assert "model.freeze" in line and "no.such.parameter" in line  # raised while loading the model
    assert _snapshot(ws) == before  # runs/bad and the output_dir it made are gone
    recipe = _tiny_recipe(ws, tiny)
    code, out, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress"])
    assert code == 0, err  # the same name runs: not "already exists"
    folder = ws / "out" / "nested" / "bad"
    assert f"run folder: {folder}" in out
    assert (folder / "model" / "modules.json").is_file() and (folder / "config.yaml").is_file()
    assert not [p for p in folder.rglob("*.tmp")]
    rows = [json.loads(line) for line in (folder / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1]


def test_a_crash_after_the_folder_is_made_removes_it(ws, tiny, monkeypatch, capsys):
    from vembed_bench.train import loop

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("simulated crash inside the loop")

    monkeypatch.setattr(loop, "fit", crash)
    recipe = _tiny_recipe(ws, tiny)
    before = _snapshot(ws)
    monkeypatch.setattr(sys, "argv", ["vembed-bench", "train", str(recipe), "--no-progress"])
    from vembed_bench.cli import main

    with pytest.raises(RuntimeError, match="simulated crash"):  # a bug keeps its traceback
        main()
    assert _snapshot(ws) == before


def test_a_failure_after_a_checkpoint_keeps_the_folder_and_resume_continues(
    ws, tiny, monkeypatch, capsys
):
    from vembed_bench.errors import VembedError
    from vembed_bench.train import flow

    real_plot = flow._plot_loss

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise VembedError("loss.png: no space left on device")

    monkeypatch.setattr(flow, "_plot_loss", full_disk)  # fails after fit saved its checkpoint
    recipe = _tiny_recipe(ws, tiny)
    code, _, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress"])
    assert code == 2
    line = _one_error_line(err, model_loaded=True)
    folder = ws / "out" / "nested" / "bad"
    assert "no space left" in line and str(folder) in line and "--resume" in line
    assert (folder / "checkpoints" / "step-0000001" / "state.json").is_file()
    monkeypatch.setattr(flow, "_plot_loss", real_plot)
    code, _, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress", "--resume"])
    assert code == 0, err
    assert (folder / "loss.png").is_file() and (folder / "model" / "modules.json").is_file()


def test_a_failure_after_the_zero_shot_eval_keeps_its_results(ws, tiny, monkeypatch, capsys):
    """Eval results are computed work: kept, and --overwrite (not --resume: no checkpoint) named."""
    beir = ws / "beir"
    _jsonl(beir / "corpus.jsonl", [{"_id": f"d{i}", "text": f"answer {i}"} for i in range(4)])
    _jsonl(beir / "queries.jsonl", [{"_id": f"q{i}", "text": f"question {i}"} for i in range(4)])
    (beir / "qrels").mkdir()
    (beir / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))
    )
    recipe = _tiny_recipe(ws, tiny, **{"model.freeze": ["no.such.parameter"],
                                      "eval.tasks": [str(beir)], "eval.cache_dir": "{tmp}/cache"})
    code, _, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress"])
    assert code == 2
    line = _one_error_line(err, model_loaded=True)
    folder = ws / "out" / "nested" / "bad"
    assert "model.freeze" in line and "--overwrite" in line and str(folder) in line
    assert list((folder / "eval" / "zero_shot").rglob("test*.json"))
    assert not (folder / "checkpoints").exists()


def test_a_pickled_checkpoint_is_refused_by_name(ws, monkeypatch, capsys):
    """A ``.bin`` that ``torch.load(weights_only=True)`` refuses: one line, its code never runs."""
    pytest.importorskip("timm")
    import timm
    import torch

    from vembed_bench.encoders.timm_encoder import save_timm_folder

    folder = save_timm_folder(timm.create_model("test_resnet", pretrained=False, num_classes=0),
                              ws / "project" / "timm")
    (folder / "model.safetensors").unlink()
    marker = ws / "pickle-ran"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(str(marker))},
               folder / "pytorch_model.bin")
    rows = b'{"query_image": "img/a.png", "label": "x"}\n{"query_image": "img/a.png", "label": "y"}\n'
    _write(Path("project/data/rows.jsonl"), rows)(ws)
    recipe = _recipe_file(ws, _apply(_base_recipe(ws), {
        "model.path": "timm", "model.type": "timm", "data.train": "data/rows.jsonl",
        "loss.name": "supcon"}, ws))
    before = _snapshot(ws)
    code, _, err = _main(monkeypatch, capsys, ["train", str(recipe), "--no-progress"])
    assert code == 2
    line = _one_error_line(err)
    assert str(folder / "pytorch_model.bin") in line and "safetensors" in line
    assert "weights_only=True" in line
    assert not marker.exists()  # never retried with weights_only=False
    assert _snapshot(ws) == before


class _Payload:
    """Pickles as a call that would create ``path`` when unpickled without weights_only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def test_load_weights_only_reads_tensors_and_names_bad_files(tmp_path):
    import torch

    from vembed_bench.errors import VembedError
    from vembed_bench.torch_files import load_weights_only

    good = tmp_path / "good.pt"
    torch.save({"w": torch.arange(3.0)}, good)
    assert torch.equal(load_weights_only(good)["w"], torch.tensor([0.0, 1.0, 2.0]))
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.bin"
    torch.save({"x": _Payload(str(marker))}, evil)
    with pytest.raises(VembedError) as err:
        load_weights_only(evil)
    assert str(evil) in str(err.value) and "safetensors" in str(err.value)
    assert "\n" not in str(err.value) and not marker.exists()
    truncated = tmp_path / "cut.pt"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(VembedError, match="cut.pt"):
        load_weights_only(truncated)
