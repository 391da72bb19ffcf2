"""MMEB (Massive Multimodal Embedding Benchmark, TIGER-Lab MMEB-eval): loader and scoring.

Layout, as published (``TIGER-Lab/MMEB-eval`` plus its ``images.zip``)::

    MMEB-eval/<Dataset>/test-*.parquet    one folder of parquet per dataset
    MMEB-eval/eval_images/<Dataset>/...   images (qry_img_path / tgt_img_path are relative to it)

Each parquet row is one query: ``qry_text`` (the instruction, with an
``<|image_1|>`` placeholder when there is a query image), optionally
``qry_inst``, ``qry_img_path`` (may be empty), and its own candidate list:
``tgt_text`` and ``tgt_img_path`` (equal-length lists, 1,000 in the released
data). The first candidate is the correct one (VLM2Vec scores ``argmax == 0``).

As :class:`TaskData`: every distinct (text, image) candidate is one corpus
item, so candidates shared across queries are encoded once; each query gets
``candidates[qid]`` (its own list) and one relevant document, its first
candidate. The pipeline then searches each query only within its list, and
precision@1 is the VLM2Vec accuracy. :func:`mmeb_summary` averages the
per-dataset scores per meta-task, in- and out-of-distribution and overall,
in the shape of the VLM2Vec table.

The data root is ``params.path`` of the card, else ``<data root>/MMEB-eval``
(``--data-root`` / ``$VEMBED_DATA_ROOT``); images from ``params.image_dir``,
else ``<MMEB-eval>/eval_images``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

from vembed_bench.data.cards import TaskCard, resolve_param_path
from vembed_bench.data.files import REENCODE, warn_empty_items
from vembed_bench.data.paths import require_plain_name, resolve_inside
from vembed_bench.data.types import Item, TaskData
from vembed_bench.errors import VembedError

IMAGE_TOKEN = "<|image_1|>"

# dataset -> (meta-task, in-distribution?) as in the VLM2Vec paper (36 datasets: 20 IND, 16 OOD).
DATASETS: dict[str, tuple[str, bool]] = {
    **{d: ("classification", True) for d in ("ImageNet-1K", "N24News", "HatefulMemes", "VOC2007", "SUN397")},
    **{d: ("classification", False) for d in ("Place365", "ImageNet-A", "ImageNet-R", "ObjectNet", "Country211")},
    **{d: ("vqa", True) for d in ("OK-VQA", "A-OKVQA", "DocVQA", "InfographicsVQA", "ChartQA", "Visual7W")},
    **{d: ("vqa", False) for d in ("ScienceQA", "VizWiz", "GQA", "TextVQA")},
    **{d: ("retrieval", True) for d in ("VisDial", "CIRR", "VisualNews_t2i", "VisualNews_i2t", "MSCOCO_t2i",
                                         "MSCOCO_i2t", "NIGHTS", "WebQA")},
    **{d: ("retrieval", False) for d in ("OVEN", "FashionIQ", "EDIS", "Wiki-SS-NQ")},
    "MSCOCO": ("grounding", True),
    **{d: ("grounding", False) for d in ("RefCOCO", "RefCOCO-Matching", "Visual7W-Pointing")},
}
META_TASKS = ("classification", "vqa", "retrieval", "grounding")
META_LABELS = {"classification": "Classification", "vqa": "VQA", "retrieval": "Retrieval",
               "grounding": "Grounding"}


def card_name(dataset: str) -> str:
    """``ImageNet-1K`` -> ``mmeb_imagenet_1k`` (the task card's name)."""
    return "mmeb_" + "".join(c if c.isalnum() else "_" for c in dataset.lower())


def _root(card: TaskCard) -> Path:
    if card.params.get("path"):
        return resolve_param_path(str(card.params["path"]), card)
    from vembed_bench.data.data_root import data_root

    base = data_root()
    if base is None:
        raise VembedError(
            f"task '{card.name}': MMEB data not found; download TIGER-Lab/MMEB-eval (parquet folders and "
            "images.zip unpacked as eval_images/) into DIR/MMEB-eval and pass --data-root DIR"
        )
    return base / "MMEB-eval" if (base / "MMEB-eval").is_dir() else base


def mmeb_loader(card: TaskCard, split: str) -> TaskData:
    """``loader: mmeb``: the MMEB-eval dataset ``params.dataset``, each query with its candidates."""
    dataset = card.params.get("dataset")
    if not isinstance(dataset, str) or not dataset:
        raise VembedError(f"{card.path or card.name}: an 'mmeb' card needs params.dataset (e.g. ImageNet-1K)")
    require_plain_name(dataset, str(card.path or card.name), "params.dataset")
    root = _root(card)
    if resolve_inside(root, dataset) is None:
        raise VembedError(f"{card.path or card.name}: params.dataset '{dataset}' resolves outside the MMEB "
                          f"folder {root} (a symlink out of it); give the data's absolute path as params.path")
    image_dir = (resolve_param_path(str(card.params["image_dir"]), card, "image_dir")
                 if card.params.get("image_dir") else root / "eval_images")
    return load_mmeb(root / dataset, image_dir, name=card.name, split=split)


def load_mmeb(folder: Path, image_dir: Path, *, name: str, split: str = "test") -> TaskData:
    """Read one MMEB-eval dataset folder (all ``<split>-*.parquet`` files, else all ``*.parquet``)."""
    from vembed_bench.data.images import resolve_image

    require_plain_name(split, name, "split")
    files = sorted(folder.glob(f"{split}-*.parquet")) or sorted(folder.glob("*.parquet"))
    if not files:
        raise VembedError(f"task '{name}': no parquet files in {folder} (MMEB-eval layout: <Dataset>/test-*.parquet)")
    corpus: dict[tuple[str, str], Item] = {}
    queries: list[Item] = []
    qrels: dict[str, dict[str, int]] = {}
    candidates: dict[str, list[str]] = {}

    def image(value: Any, path: Path, row: int) -> Path | None:
        text = "" if value is None else str(value).strip()
        return resolve_image(image_dir, text, f"{path} row {row}", None) if text else None

    number = 0
    for path in files:
        frame = _read_parquet(path)
        missing = {"qry_text", "qry_img_path", "tgt_text", "tgt_img_path"} - set(frame.columns)
        if missing:
            raise VembedError(f"{path}: missing MMEB columns {', '.join(sorted(missing))}")
        empty: list[str] = []
        for row_no, row in enumerate(frame.itertuples(index=False), start=1):
            qid = f"q{number}"
            number += 1
            texts = _as_list(row.tgt_text, "tgt_text", path, row_no)
            images = _as_list(row.tgt_img_path, "tgt_img_path", path, row_no)
            if not texts and images:
                texts = [""] * len(images)
            if not images:
                images = [""] * len(texts)
            if len(texts) != len(images) or not texts:
                raise VembedError(f"{path} row {row_no}: tgt_text and tgt_img_path must be non-empty lists "
                                  f"of equal length ({len(texts)} vs {len(images)})")
            ids: list[str] = []
            for text, img in zip(texts, images):
                key = (str(text or ""), str(img or ""))
                if key not in corpus:
                    digest = hashlib.sha1("\0".join(key).encode("utf-8")).hexdigest()[:16]
                    corpus[key] = Item(id=f"c{digest}", text=_clean(key[0]), image=image(key[1], path, row_no))
                    if not (corpus[key].text or corpus[key].image):
                        empty.append(corpus[key].id)
                doc = corpus[key].id
                if doc not in ids:
                    ids.append(doc)
            instruction = str(getattr(row, "qry_inst", "") or "").replace(IMAGE_TOKEN, "").strip()
            query = Item(id=qid, text=_clean(str(row.qry_text or "")), instruction=instruction,
                         image=image(row.qry_img_path, path, row_no))
            if not (query.text or query.image):
                empty.append(qid)
            queries.append(query)
            candidates[qid] = ids
            qrels[qid] = {ids[0]: 1}
        warn_empty_items(path, empty)
    return TaskData(name=name, split=split, queries=queries, corpus=list(corpus.values()), qrels=qrels,
                    root=image_dir, candidates=candidates,
                    meta={"mmeb_dataset": folder.name, "files": [p.name for p in files]})


def _read_parquet(path: Path) -> Any:
    """``path`` as a pandas frame; an unreadable file or invalid UTF-8 is one line naming file and row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise VembedError(f"{path}: cannot read this parquet file ({err}); download it again") from None
    try:
        table.validate(full=True)  # checks UTF-8, which reading does not (pandas would fail mid-iteration)
    except pa.ArrowInvalid:
        raise _utf8_error(path, table) from None
    return table.to_pandas()


def _utf8_error(path: Path, table: Any) -> VembedError:
    """Find the first value that is not valid UTF-8 (arrow's own error names neither row nor column)."""
    for column in table.column_names:
        for row, value in enumerate(table.column(column), start=1):
            try:
                value.as_py()
            except UnicodeDecodeError as err:
                return VembedError(
                    f"{path} row {row} column {column}: invalid UTF-8 (byte 0x{err.object[err.start]:02x} at "
                    f"byte offset {err.start} of the value); {REENCODE}"
                )
    return VembedError(f"{path}: the parquet file is damaged; download it again")


def _as_list(value: Any, column: str, path: Path, row_no: int) -> list[Any]:
    """A list cell (a numpy array from parquet); a plain string would be iterated letter by letter."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise VembedError(f"{path} row {row_no}: {column} must be a list (one entry per candidate), "
                          f"got {type(value).__name__}")
    return list(value)


def _clean(text: str) -> str:
    """Drop the model-specific image placeholder; encoders add their own image tokens."""
    return text.replace(IMAGE_TOKEN, "").strip()


def mmeb_summary(scores: Mapping[str, float]) -> dict[str, Any]:
    """Per-dataset precision@1 (keys: MMEB dataset names or card names) -> the VLM2Vec averages.

    Returns ``{"classification": .., "vqa": .., "retrieval": .., "grounding": ..,
    "ind": .., "ood": .., "overall": .., "counts": {...}, "missing": [...]}``; each
    average is over the datasets present (``None`` when there are none), and
    ``counts`` says how many went into each.
    """
    by_card = {card_name(d): d for d in DATASETS}
    named: dict[str, float] = {}
    for key, value in scores.items():
        dataset = key if key in DATASETS else by_card.get(key)
        if dataset is None:
            raise VembedError(f"{key!r} is not an MMEB dataset; known: {', '.join(DATASETS)}")
        named[dataset] = float(value)
    groups: dict[str, list[float]] = {m: [] for m in (*META_TASKS, "ind", "ood", "overall")}
    for dataset, value in named.items():
        meta, ind = DATASETS[dataset]
        groups[meta].append(value)
        groups["ind" if ind else "ood"].append(value)
        groups["overall"].append(value)
    summary: dict[str, Any] = {g: (sum(v) / len(v) if v else None) for g, v in groups.items()}
    summary["counts"] = {g: len(v) for g, v in groups.items()}
    summary["missing"] = [d for d in DATASETS if d not in named]
    return summary


SUMMARY_LABELS = {**META_LABELS, "ind": "IND", "ood": "OOD", "overall": "Overall"}
"""The flat score keys of :func:`summary_scores`, in table order, with their column labels."""


def summary_scores(scores: Mapping[str, float]) -> dict[str, float]:
    """:func:`mmeb_summary` as flat scores (keys of :data:`SUMMARY_LABELS`, empty groups left out).

    This is the hook a suite card names with ``params.summary: mmeb``: the
    suite file and the leaderboard overview show these averages, not a plain mean.
    """
    summary = mmeb_summary(scores)
    return {key: summary[key] for key in SUMMARY_LABELS if summary[key] is not None}


def mmeb_table(rows: Mapping[str, Mapping[str, float]], *, percent: bool = True) -> str:
    """A Markdown table like VLM2Vec's: one row per model, columns per meta-task, IND, OOD, Overall.

    ``rows`` maps a model label to its per-dataset precision@1 scores.
    """
    header = ["Model", *(f"{META_LABELS[m]} ({sum(1 for v in DATASETS.values() if v[0] == m)})" for m in META_TASKS),
              "IND (20)", "OOD (16)", "Overall (36)"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for label, scores in rows.items():
        s = mmeb_summary(scores)
        cells = []
        for key in (*META_TASKS, "ind", "ood", "overall"):
            value = s[key]
            cell = "-" if value is None else f"{value * (100 if percent else 1):.1f}"
            expected = {"ind": 20, "ood": 16, "overall": 36}.get(
                key, sum(1 for v in DATASETS.values() if v[0] == key))
            if value is not None and s["counts"][key] < expected:
                cell += f" ({s['counts'][key]}/{expected})"
            cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
