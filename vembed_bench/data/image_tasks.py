"""Loaders for image benchmarks read from their original files.

* ``sop`` -- Stanford Online Products, ``Ebay_<split>.txt`` (header
  ``image_id class_id super_class_id path``, images under ``<super>_final/``).
  Image-to-image: every image of the split queries all the others (never
  itself: ``exclude_self``), and every other image of its class is relevant.
  ``hit@k`` is the SOP "Recall@K".
* ``karpathy`` -- Flickr30k / COCO captions from Karpathy's
  ``dataset_<name>.json`` (``images[]`` with ``filename``, ``split`` and
  ``sentences[].raw``). ``direction: t2i`` makes each caption a query whose one
  relevant document is its image; ``direction: i2t`` makes each image a query
  whose relevant documents are all its captions, so ``hit@k`` (any caption in
  the top k) is the CLIP image-to-text "Recall@K".

The conventions are written into ``TaskData.meta`` and hence into every
result file, because "Recall@K" means different things in different papers.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

from vembed_bench.data.cards import TaskCard
from vembed_bench.data.data_root import locate_dataset
from vembed_bench.data.files import read_text, read_text_lines
from vembed_bench.data.images import resolve_image
from vembed_bench.data.paths import require_plain_name
from vembed_bench.data.types import Item, Qrels, TaskData
from vembed_bench.errors import VembedError, where

log = logging.getLogger(__name__)

SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]
SOP_DOWNLOAD = (
    "download Stanford_Online_Products.zip from https://cvgl.stanford.edu/projects/lifted_struct/ "
    "and unzip it under the data root"
)
SOP_CONVENTION = (
    "image-to-image over the whole split: each image queries all the others, never itself; "
    "relevant = every other image of the same class_id; hit@k is the SOP 'Recall@K'"
)
FLICKR_DOWNLOAD = (
    "put Karpathy's dataset_flickr30k.json (from caption_datasets.zip) and the flickr30k-images/ "
    "folder (from https://shannon.cs.illinois.edu/DenotationGraph/) in one folder named flickr30k "
    "under the data root"
)
T2I_CONVENTION = (
    "text-to-image: each caption is a query with exactly one relevant image (its own); "
    "hit@k = recall@k = the caption's image is in the top k"
)
I2T_CONVENTION = (
    "image-to-text: each image is a query whose relevant documents are all its captions; "
    "hit@k = any of its captions is in the top k (the CLIP convention for image-to-text "
    "Recall@K); recall@k is the share of its captions in the top k"
)


def sop_loader(card: TaskCard, split: str) -> TaskData:
    """Stanford Online Products image-to-image retrieval for ``split`` (``test`` or ``train``)."""
    marker = f"Ebay_{split}.txt"
    root = locate_dataset(
        card, dirname=str(card.params.get("dirname", "Stanford_Online_Products")),
        marker=marker, download=SOP_DOWNLOAD,
    )
    return load_sop(root, split, name=card.name)


def read_sop_rows(root: str | Path, split: str = "test") -> list[tuple[str, str, Path]]:
    """``(image_id, class_id, absolute image path)`` for each row of ``root/Ebay_<split>.txt``."""
    root = Path(root)
    path = root / f"Ebay_{require_plain_name(split, str(root), 'split')}.txt"
    rows: list[tuple[str, str, Path]] = []
    seen: dict[str, int] = {}
    image_line: dict[Path, int] = {}
    header = True
    for line_no, line in read_text_lines(path):
        cols = line.split()
        if not cols:
            continue
        if header:
            if cols != SOP_HEADER:
                raise VembedError(
                    f"{where(path, line_no)}: expected the header '{' '.join(SOP_HEADER)}', "
                    f"found '{line.strip()}'"
                )
            header = False
            continue
        if len(cols) != 4:
            raise VembedError(
                f"{where(path, line_no)}: expected 4 space-separated columns "
                f"({' '.join(SOP_HEADER)}), found {len(cols)}"
            )
        image_id, class_id, _super, rel = cols
        if image_id in seen:
            raise VembedError(
                f"{where(path, line_no)}: duplicate image_id '{image_id}' (first on line {seen[image_id]})"
            )
        seen[image_id] = line_no
        image = resolve_image(root, rel, path, line_no)
        if image in image_line:
            raise VembedError(
                f"{where(path, line_no)}: image '{rel}' is already listed on line {image_line[image]}; "
                "one image under two ids would be its own same-class match"
            )
        image_line[image] = line_no
        rows.append((image_id, class_id, image))
    if not rows:
        raise VembedError(f"{path}: no images listed; the file holds only a header")
    return rows


def load_sop(root: str | Path, split: str = "test", *, name: str = "sop_i2i") -> TaskData:
    """Read ``root/Ebay_<split>.txt`` into an image-to-image :class:`TaskData`."""
    root = Path(root)
    rows = read_sop_rows(root, split)
    items = [Item(id=image_id, image=image) for image_id, _, image in rows]
    class_of = {image_id: class_id for image_id, class_id, _ in rows}
    classes: dict[str, list[str]] = defaultdict(list)
    for image_id, class_id, _ in rows:
        classes[class_id].append(image_id)
    qrels: Qrels = {}
    queries: list[Item] = []
    for item in items:
        others = [other for other in classes[class_of[item.id]] if other != item.id]
        if others:
            qrels[item.id] = {other: 1 for other in others}
            queries.append(item)
    path = root / f"Ebay_{split}.txt"
    skipped = len(items) - len(queries)
    if skipped:
        log.warning("%s: skipped %d images that are alone in their class", path, skipped)
    return TaskData(
        name=name, split=split, queries=queries, corpus=items, qrels=qrels, root=root,
        exclude_self=True, skipped_queries=skipped,
        meta={"source": str(path), "n_classes": len(classes), "convention": SOP_CONVENTION},
    )


def karpathy_loader(card: TaskCard, split: str) -> TaskData:
    """Karpathy-split caption retrieval; ``params.direction`` is ``t2i`` or ``i2t``."""
    dataset = require_plain_name(str(card.params.get("dataset", "flickr30k")), str(card.path or card.name),
                                 "params.dataset")
    direction = str(card.params.get("direction", "t2i"))
    root = locate_dataset(
        card, dirname=str(card.params.get("dirname", dataset)),
        marker=f"dataset_{dataset}.json",
        download=str(card.params.get("download", FLICKR_DOWNLOAD)),
    )
    images = card.params.get("images")
    return load_karpathy(
        root / f"dataset_{dataset}.json", split, direction=direction, name=card.name,
        image_dir=str(images) if images else None,
    )


def load_karpathy(
    json_path: str | Path,
    split: str = "test",
    *,
    direction: str = "t2i",
    name: str = "flickr30k",
    image_dir: str | None = None,
) -> TaskData:
    """Read one split of a Karpathy caption JSON as text-to-image or image-to-text retrieval.

    Images are looked up in ``image_dir`` (relative to the JSON's folder), else
    in the first of ``flickr30k-images``, ``images`` or the folder itself that
    holds the first image. Image ids are file names; caption ids are
    ``<filename>#<n>`` (the Flickr30k token-file convention).
    """
    if direction not in ("t2i", "i2t"):
        raise VembedError(f"direction '{direction}' must be t2i (text-to-image) or i2t (image-to-text)")
    json_path = Path(json_path)
    root = json_path.parent.resolve()
    try:
        raw = json.loads(read_text(json_path))
    except json.JSONDecodeError as err:
        raise VembedError(
            f"{where(json_path, err.lineno)}: invalid JSON ({err.msg} at column {err.colno})"
        ) from None
    rows = raw.get("images") if isinstance(raw, dict) else None
    if not isinstance(rows, list):
        raise VembedError(f"{json_path}: expected an object with an 'images' list (Karpathy layout)")
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("split"), str):
            raise VembedError(
                f"{json_path}: images[{index}] must be an object with a 'split' string (Karpathy layout)"
            )
    chosen = [(i, row) for i, row in enumerate(rows) if row["split"] == split]
    if not chosen:
        found = sorted({str(r.get("split")) for r in rows if isinstance(r, dict)})
        raise VembedError(f"{json_path}: no images in split '{split}'; splits: {', '.join(found) or 'none'}")
    for index, row in chosen:
        if not isinstance(row.get("filename"), str) or not row["filename"].strip():
            raise VembedError(f"{json_path}: images[{index}] has no 'filename'")
    folder = _image_folder(root, image_dir, chosen[0][1], json_path, chosen[0][0])

    images: list[Item] = []
    captions: list[Item] = []
    image_of: dict[str, str] = {}
    seen: set[str] = set()
    for index, row in chosen:
        filename = row["filename"]
        if filename in seen:
            raise VembedError(f"{json_path}: images[{index}] repeats filename '{filename}'")
        seen.add(filename)
        rel = (folder / filename).relative_to(root).as_posix() if folder != root else filename
        image = resolve_image(root, rel, f"{json_path} images[{index}]", None)
        images.append(Item(id=filename, image=image))
        sentences = row.get("sentences") or []
        if not isinstance(sentences, list):
            raise VembedError(f"{json_path}: images[{index}].sentences must be a list of {{'raw': caption}}")
        for n, sentence in enumerate(sentences):
            text = str(sentence.get("raw", "")).strip() if isinstance(sentence, dict) else ""
            if not text:
                raise VembedError(f"{json_path}: images[{index}].sentences[{n}] has no 'raw' caption")
            caption_id = f"{filename}#{n}"
            captions.append(Item(id=caption_id, text=text))
            image_of[caption_id] = filename
        if not sentences:
            raise VembedError(f"{json_path}: images[{index}] ('{filename}') has no sentences")

    if direction == "t2i":
        queries, corpus = captions, images
        qrels: Qrels = {cid: {image_of[cid]: 1} for cid in image_of}
        convention = T2I_CONVENTION
    else:
        queries, corpus = images, captions
        qrels = defaultdict(dict)
        for cid, filename in image_of.items():
            qrels[filename][cid] = 1
        qrels = dict(qrels)
        convention = I2T_CONVENTION
    return TaskData(
        name=name, split=split, queries=queries, corpus=corpus, qrels=qrels, root=root,
        meta={"source": str(json_path), "direction": direction, "n_images": len(images),
              "n_captions": len(captions), "convention": convention},
    )


def _image_folder(root: Path, image_dir: str | None, first: dict, json_path: Path, index: int) -> Path:
    if image_dir:
        return resolve_image(root, image_dir, json_path, None, check_exists=False)
    filename = str(first.get("filename", ""))
    for candidate in (root / "flickr30k-images", root / "images", root):
        if (candidate / filename).is_file():
            return candidate
    raise VembedError(
        f"{json_path}: images[{index}] '{filename}' not found in {root / 'flickr30k-images'}, "
        f"{root / 'images'} or {root}; {FLICKR_DOWNLOAD}"
    )


def beir_root_loader(card: TaskCard, split: str) -> TaskData:
    """A BEIR-layout folder under the data root (what ``vembed-bench prepare`` writes)."""
    from vembed_bench.data.beir import load_beir

    dirname = str(card.params.get("dirname", card.name))
    download = str(card.params.get(
        "download", f"build it with `vembed-bench prepare ... --out <DATA_ROOT>/{dirname}`"))
    root = locate_dataset(card, dirname=dirname, marker="corpus.jsonl", download=download)
    return load_beir(root, split, name=card.name, exclude_self=card.exclude_self)
