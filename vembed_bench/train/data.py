"""Training data readers: files, BEIR train qrels and HF datasets -> :class:`TrainExample`.

Formats (``data.format``; ``auto`` picks from the first row's keys):

* ``pairs``: ``{"query", "positive", "negatives": [...]}`` (negatives optional);
* ``embedrag``: ``{"query", "pos": [...], "neg": [...]}``; one example per positive;
* ``labels``: ``{"query", "label"}`` for supervised contrastive (``positive`` optional);
* ``scored``: ``{"query", "positive", "score"}`` for CoSENT;
* ``teacher``: ``pairs`` plus ``"teacher_scores": [pos, neg1, ...]`` for distillation;
* ``beir``: a BEIR folder or task card; each judged (query, document) pair of the
  split's qrels with grade > 0 is a positive (items with an image become images).

Images: ``query_image``, ``positive_image`` and ``negative_images`` hold image
paths (a ``query`` next to ``query_image`` makes a mixed image+text input), and a
``positive`` / ``negatives`` value that ends in an image suffix is an image path
too. Paths are relative to ``data.image_root`` (default: the data file's folder)
and may not escape it.

Files are JSONL, CSV (lists as JSON text) or Parquet; ``hf:<name>`` reads a Hugging
Face dataset by name. ``data.columns`` maps our field names to the file's. A row
that does not fit names its file and line, because "KeyError: 'query'" after an
hour of tokenising helps nobody.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from vembed_bench.errors import VembedError, where

__all__ = ["ImageInput", "TrainExample", "TrainInput", "detect_format", "has_images", "has_texts",
           "read_examples"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageInput:
    """An image to embed (absolute path, checked to lie inside the image root), with optional text."""

    path: str
    text: str = ""


TrainInput = Union[str, ImageInput]
"""Text (prompts already applied) or an image; what a trainable model's ``tokenize`` takes."""


@dataclass(frozen=True)
class TrainExample:
    """One training row (prompts already applied to its texts)."""

    query: TrainInput
    positive: TrainInput = ""
    negatives: tuple[TrainInput, ...] = ()
    label: str | None = None
    score: float | None = None
    teacher_scores: tuple[float, ...] | None = None


def read_examples(recipe: Any) -> list[TrainExample]:
    """All training examples of ``recipe.data``, with its prompts and limit applied."""
    cfg = recipe.data
    source = cfg.train
    from vembed_bench.train.paths import resolve_image_root

    image_root = resolve_image_root(recipe)
    if source.startswith("hf:"):
        rows = _hf_rows(source[3:], cfg.split)
        examples = list(_from_rows(rows, cfg, source, image_root or Path.cwd()))
    else:
        path = _local_path(recipe, source)
        if path is not None and path.is_file():
            examples = list(_from_rows(_file_rows(path), cfg, str(path), image_root or path.parent))
        else:
            examples = _from_beir(path if path is not None else source, cfg)
    if not examples:
        raise VembedError(f"{recipe.source}: 'data.train' {source} has no examples")
    if cfg.limit is not None:
        examples = examples[: cfg.limit]
    return examples


def has_images(examples: Sequence[TrainExample]) -> bool:
    return any(isinstance(x, ImageInput) for ex in examples for x in _inputs(ex))


def has_texts(examples: Sequence[TrainExample]) -> bool:
    return any(not isinstance(x, ImageInput) or x.text for ex in examples for x in _inputs(ex))


def _inputs(example: TrainExample) -> Iterator[TrainInput]:
    yield example.query
    if example.positive:
        yield example.positive
    yield from example.negatives


def _local_path(recipe: Any, source: str) -> Path | None:
    if source.startswith("@package/"):
        return None  # a card-style package path: resolved by the task-card code
    path = recipe.resolve_path(source, "data.train")
    if path.exists():
        return path
    if Path(source).suffix.lower() in (".jsonl", ".json", ".csv", ".parquet", ".tsv"):
        raise VembedError(
            f"{recipe.source}: 'data.train' {source}: training data file {path} does not exist"
        )
    return None  # a task card name


# -- rows ----------------------------------------------------------------------------------


def _file_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        from vembed_bench.data.files import read_jsonl

        for number, row in read_jsonl(path):
            yield where(path, number), row
    elif suffix in (".csv", ".tsv"):
        import csv

        _check_utf8(path)
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if suffix == ".tsv" else ",")
            for number, row in enumerate(reader, start=2):  # line 1 is the header
                yield (
                    where(path, number),
                    {k: _csv_value(v) for k, v in row.items() if k is not None},
                )
    elif suffix == ".parquet":
        import pandas as pd

        try:
            frame = pd.read_parquet(path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types
            raise VembedError(f"{path}: cannot read Parquet ({err})") from None
        for number, row in enumerate(frame.to_dict(orient="records"), start=1):
            yield f"{path} row {number}", {k: _plain(v) for k, v in row.items()}
    else:
        raise VembedError(
            f"{path}: unsupported training file type '{suffix}'; use .jsonl, .csv, .tsv or .parquet"
        )


def _check_utf8(path: Path) -> None:
    """Name the line and byte of the first byte that is not UTF-8 (the csv reader decodes in blocks)."""
    from vembed_bench.data.files import read_text

    read_text(path)


def _hf_rows(name: str, split: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise VembedError("reading hf:<name> needs the 'datasets' package") from None
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as err:  # noqa: BLE001 - hub and file errors vary
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise VembedError(
            f"cannot load Hugging Face dataset {name} (split {split}): {first}"
        ) from None
    for number, row in enumerate(dataset, start=1):
        yield f"hf:{name}[{split}] row {number}", dict(row)


def _csv_value(value: str | None) -> Any:
    if value is None:
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return value
    return value


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# -- formats -------------------------------------------------------------------------------


def detect_format(row: Mapping[str, Any]) -> str:
    """The format implied by a (column-mapped) row's keys."""
    if "pos" in row:
        return "embedrag"
    if "teacher_scores" in row:
        return "teacher"
    if "score" in row and "positive" in row:
        return "scored"
    if "label" in row:
        return "labels"
    if "positive" in row or "positive_image" in row:
        return "pairs"
    raise VembedError(
        f"cannot tell the data format from the columns {sorted(row)}; expected "
        "query+positive(+negatives), query+pos+neg, query+label or query+positive+score, "
        "with query_image / positive_image for images (use data.columns to map other names)"
    )


def _from_rows(
    rows: Iterator[tuple[str, dict[str, Any]]], cfg: Any, source: str, image_root: Path
) -> Iterator[TrainExample]:
    mapping = {theirs: ours for ours, theirs in cfg.columns.items()}
    fmt = None if cfg.format == "auto" else cfg.format
    if fmt == "beir":
        raise VembedError(
            f"{source}: data.format 'beir' needs a BEIR folder or task name, not a file"
        )
    for place, raw in rows:
        row = {mapping.get(key, key): value for key, value in raw.items()}
        if fmt is None:
            try:
                fmt = detect_format(row)
            except VembedError as err:
                raise VembedError(f"{place}: {err}") from None
        yield from _parse_row(row, fmt, place, cfg, _Images(image_root, place))


class _Images:
    """Turns a row's image fields into :class:`ImageInput` (checked against the image root)."""

    def __init__(self, root: Path, place: str) -> None:
        self.root, self.place = root, place

    def image(self, value: Any, key: str, text: str = "") -> ImageInput:
        from vembed_bench.data.images import resolve_image_at

        if not isinstance(value, str) or not value.strip():
            raise VembedError(f"{self.place}: '{key}' must be an image path, got {value!r}"[:200])
        return ImageInput(str(resolve_image_at(self.root, value, self.place)), text)

    def document(self, text: str, prompt: str, key: str) -> TrainInput:
        """A document value: an image path when it ends in an image suffix, else prompted text."""
        if text.lower().endswith(IMAGE_SUFFIXES):
            return self.image(text, key)
        return prompt + text


def _query(row: Mapping[str, Any], place: str, cfg: Any, images: _Images) -> TrainInput:
    if "query_image" not in row:
        return cfg.query_prompt + _text(row, "query", place)
    text = row.get("query")
    if text is not None and not isinstance(text, str):
        raise VembedError(f"{place}: 'query' next to 'query_image' must be text, got {text!r}"[:200])
    return images.image(row["query_image"], "query_image", cfg.query_prompt + text if text else "")


def _positive(row: Mapping[str, Any], place: str, cfg: Any, images: _Images) -> TrainInput:
    if "positive_image" in row:
        return images.image(row["positive_image"], "positive_image")
    return images.document(_text(row, "positive", place), cfg.document_prompt, "positive")


def _negatives(row: Mapping[str, Any], key: str, place: str, cfg: Any, images: _Images) -> tuple:
    found = [images.document(t, cfg.document_prompt, key) for t in _texts(row, key, place)]
    found += [images.image(v, "negative_images") for v in _list(row, "negative_images", place)]
    return tuple(found)


def _parse_row(
    row: dict[str, Any], fmt: str, place: str, cfg: Any, images: _Images
) -> Iterator[TrainExample]:
    query = _query(row, place, cfg, images)
    doc = cfg.document_prompt
    if fmt == "embedrag":
        positives = _texts(row, "pos", place, required=True)
        negatives = _negatives(row, "neg", place, cfg, images)
        for positive in positives:
            yield TrainExample(query, images.document(positive, doc, "pos"), negatives)
    elif fmt in ("pairs", "teacher"):
        negatives = _negatives(row, "negatives", place, cfg, images)
        teacher = None
        if fmt == "teacher":
            teacher = tuple(
                _number(v, "teacher_scores", place) for v in _list(row, "teacher_scores", place)
            )
            if len(teacher) != 1 + len(negatives):
                raise VembedError(
                    f"{place}: 'teacher_scores' needs 1 + {len(negatives)} scores "
                    f"(positive then each negative), got {len(teacher)}"
                )
        yield TrainExample(
            query, _positive(row, place, cfg, images), negatives, teacher_scores=teacher
        )
    elif fmt == "labels":
        label = row.get("label")
        if label is None or isinstance(label, (list, dict)) or label == "":
            raise VembedError(f"{place}: 'label' must be a class name or number")
        has_positive = isinstance(row.get("positive"), str) or "positive_image" in row
        positive = _positive(row, place, cfg, images) if has_positive else ""
        yield TrainExample(query, positive, label=str(label))
    elif fmt == "scored":
        yield TrainExample(
            query,
            _positive(row, place, cfg, images),
            score=_number(row.get("score"), "score", place),
        )
    else:  # pragma: no cover - the recipe schema restricts formats
        raise VembedError(f"{place}: unknown data format {fmt!r}")


def _text(row: Mapping[str, Any], key: str, place: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if key not in row else f"{type(value).__name__} {value!r}"[:60]
        raise VembedError(
            f"{place}: '{key}' must be non-empty text ({got}); columns here: {sorted(row)}"
        )
    return value


def _list(row: Mapping[str, Any], key: str, place: str) -> list[Any]:
    value = row.get(key)
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise VembedError(f"{place}: '{key}' must be a list, got {type(value).__name__}")
    return list(value)


def _texts(row: Mapping[str, Any], key: str, place: str, *, required: bool = False) -> list[str]:
    values = _list(row, key, place)
    if required and not values:
        raise VembedError(f"{place}: '{key}' must be a non-empty list of texts")
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise VembedError(f"{place}: every entry of '{key}' must be non-empty text")
    return values


def _number(value: Any, key: str, place: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise VembedError(f"{place}: '{key}' must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise VembedError(f"{place}: '{key}' must be a number, got {value!r}") from None


# -- BEIR ----------------------------------------------------------------------------------


def _from_beir(source: str | Path, cfg: Any) -> list[TrainExample]:
    """Positive (query, document) pairs from a BEIR folder's (or task card's) qrels split."""
    from vembed_bench.data import load_task, resolve_card
    from vembed_bench.encoders.text_inputs import item_text

    card = resolve_card(str(source))
    data = load_task(card, cfg.split)
    docs = {d.id: d for d in data.corpus}
    examples = []
    for query in data.queries:
        for doc_id, grade in sorted(data.qrels.get(query.id, {}).items()):
            if grade > 0 and doc_id in docs:
                text = query.text if not query.instruction else f"{query.instruction} {query.text}"
                doc = docs[doc_id]
                examples.append(
                    TrainExample(
                        _beir_input(query.image, cfg.query_prompt, text),
                        _beir_input(doc.image, cfg.document_prompt, item_text(doc)),
                    )
                )
    return examples


def _beir_input(image: Path | None, prompt: str, text: str) -> TrainInput:
    """A BEIR item as training input: its image (with its text, if any) or its prompted text."""
    if image is None:
        return prompt + text
    return ImageInput(str(image), prompt + text if text else "")
