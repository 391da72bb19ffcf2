"""``vembed-bench prepare``: raw image datasets -> the BEIR-with-images layout.

Every converter writes one self-contained folder that the ``beir`` loader
reads like any other task, plus a ``card.yaml`` beside the data (so
``--task DIR/card.yaml`` works, with ``exclude_self`` set for image-to-image)::

    out/corpus.jsonl   {"_id", "image": "images/..."} or {"_id", "text"}
    out/queries.jsonl
    out/qrels/<split>.tsv
    out/images/...     hard links to the source images where possible, else copies
    out/card.yaml

Images are placed *inside* the folder because dataset image paths may not
leave the dataset root. Sources: Stanford Online Products (``Ebay_*.txt``),
Karpathy caption JSON (Flickr30k / COCO), an ImageFolder tree
(``class/xxx.jpg``), Fashion-MNIST IDX files (apt ``dataset-fashion-mnist``)
and the Tux Paint stamps (apt ``tuxpaint-stamps-default``: GPL, so the result
must never be committed -- build it on the machine that runs the task).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from vembed_bench.errors import VembedError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
TUXPAINT_DIR = Path("/usr/share/tuxpaint/stamps")
TRAIN_PER_CLASS = 200
"""Fashion-MNIST train images per class written to ``train.jsonl`` for fine-tuning."""


# -- the common writer --------------------------------------------------------------------------
def write_task(
    out: str | Path,
    *,
    name: str,
    corpus: list[dict[str, Any]],
    queries: list[dict[str, Any]],
    qrels: Iterable[tuple[str, str, int]],
    split: str = "test",
    exclude_self: bool = False,
    modality: str = "image-to-image",
    description: str = "",
    k_values: list[int] | None = None,
    license: str = "",
) -> Path:
    """Write corpus, queries, qrels and ``card.yaml`` into ``out`` (created)."""
    out = Path(out)
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for filename, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with open(out / filename, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, did, grade in qrels:
            handle.write(f"{qid}\t{did}\t{grade}\n")
    card = {
        "name": name, "description": description, "loader": "beir", "params": {"path": "."},
        "splits": [split], "main_metric": "hit@1", "k_values": k_values or [1, 5, 10, 100],
        "modality": modality, "size": {"queries": len(queries), "corpus": len(corpus)},
        "exclude_self": exclude_self, "license": license,
    }
    (out / "card.yaml").write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def place_image(source: Path, out: Path, rel: str) -> str:
    """Hard-link (or copy) ``source`` to ``out/rel``; return ``rel``."""
    target = out / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return rel


def class_qrels(ids_by_class: dict[str, list[str]]) -> Iterable[tuple[str, str, int]]:
    """Every ordered pair of distinct images of one class (image-to-image by class)."""
    for ids in ids_by_class.values():
        for qid in ids:
            for did in ids:
                if did != qid:
                    yield qid, did, 1


def _i2i_task(out: Path, name: str, rows: list[tuple[str, str, str]], split: str, **card: Any) -> Path:
    """``rows`` = (id, class, image rel path)."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for item_id, cls, _ in rows:
        by_class[cls].append(item_id)
    items = [{"_id": item_id, "image": rel} for item_id, _, rel in rows]
    singles = {item_id for ids in by_class.values() if len(ids) == 1 for item_id in ids}
    queries = [row for row in items if row["_id"] not in singles]
    return write_task(out, name=name, corpus=items, queries=queries, qrels=class_qrels(by_class),
                      split=split, exclude_self=True, modality="image-to-image", **card)


# -- converters -------------------------------------------------------------------------------
def prepare_sop(source: str | Path, out: str | Path, split: str = "test") -> Path:
    """Stanford Online Products (``source`` holds ``Ebay_<split>.txt``)."""
    from vembed_bench.data.image_tasks import read_sop_rows

    out = Path(out)
    source = Path(source).resolve()
    rows = [(image_id, class_id, place_image(image, out, "images/" + image.relative_to(source).as_posix()))
            for image_id, class_id, image in read_sop_rows(source, split)]
    if split == "train":  # SupCon rows for `vembed-bench train` (trainers/dinov3_sop_lora_supcon.yaml)
        write_training_rows(out, [{"query_image": rel, "label": cls} for _, cls, rel in rows])
    return _i2i_task(out, "sop_i2i_beir", rows, split, description="Stanford Online Products, image-to-image",
                     k_values=[1, 10, 100, 1000])


def prepare_karpathy(json_path: str | Path, out: str | Path, split: str = "test", direction: str = "t2i") -> Path:
    """Karpathy caption JSON, one direction per folder."""
    from vembed_bench.data.image_tasks import load_karpathy

    data = load_karpathy(json_path, split, direction=direction)
    out = Path(out)

    def row(item):
        if item.image is not None:
            return {"_id": item.id, "image": place_image(item.image, out, f"images/{item.image.name}")}
        return {"_id": item.id, "text": item.text}

    qrels = [(q, d, g) for q, docs in data.qrels.items() for d, g in docs.items()]
    name = f"{Path(json_path).stem.removeprefix('dataset_')}_{direction}_beir"
    if split == "train" and direction == "t2i":  # caption -> image pairs for `vembed-bench train`
        images = {d.id: f"images/{d.image.name}" for d in data.corpus}  # where row() places them
        captions = {q.id: q.text for q in data.queries}
        write_training_rows(out, [{"query": captions[q], "positive": images[d]}
                                  for q, d, g in qrels if g > 0])
    return write_task(out, name=name, corpus=[row(d) for d in data.corpus], queries=[row(q) for q in data.queries],
                      qrels=qrels, split=split, modality="text-to-image" if direction == "t2i" else "image-to-text",
                      description=str(data.meta["convention"]), k_values=[1, 5, 10])


def write_training_rows(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``out/train.jsonl`` (atomic): training rows whose image paths are relative to ``out``."""
    from vembed_bench.atomic import atomic_open

    path = Path(out) / "train.jsonl"
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def prepare_imagefolder(source: str | Path, out: str | Path, split: str = "test") -> Path:
    """An ImageFolder tree (``class/xxx.jpg``) as image-to-image retrieval by class."""
    source = Path(source)
    if not source.is_dir():
        raise VembedError(f"{source} is not a folder; expected class sub-folders holding images")
    rows = []
    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        for image in sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            rel = image.relative_to(source).as_posix()
            rows.append((rel, class_dir.name, place_image(image, Path(out), f"images/{rel}")))
    if not rows:
        raise VembedError(f"{source}: no images found in class sub-folders (class/xxx.jpg)")
    return _i2i_task(Path(out), f"{source.resolve().name}_i2i", rows, split,
                     description=f"image-to-image by class from the ImageFolder tree {source}")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or plain): unsigned bytes after the header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def prepare_fashion_mnist(out: str | Path, *, per_class: int = 100, seed: int = 0, split: str = "test",
                          source: str | Path = FASHION_MNIST_DIR,
                          train_per_class: int = TRAIN_PER_CLASS) -> Path:
    """A seeded class-balanced sample of Fashion-MNIST as image-to-image retrieval (MIT licence).

    Also writes ``train.jsonl`` (see :func:`write_fashion_mnist_train`): labelled images from
    the *train* split for fine-tuning, so the eval images are never trained on.
    """
    from PIL import Image

    source = Path(source)
    stem = "t10k" if split == "test" else "train"
    images, labels = _fashion_mnist_split(source, stem)
    rng = np.random.default_rng(seed)
    out = Path(out)
    rows = []
    for label, class_name in enumerate(FASHION_MNIST_CLASSES):
        chosen = np.sort(rng.choice(np.flatnonzero(labels == label), size=per_class, replace=False))
        for index in chosen:
            rel = f"images/{label}/{stem}_{index:05d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(out / rel)
            rows.append((f"{stem}_{index:05d}", class_name, rel))
    (out / "LICENSE-fashion-mnist.txt").write_text(
        "Fashion-MNIST, Copyright (c) 2017 Zalando SE, MIT License. "
        "https://github.com/zalandoresearch/fashion-mnist\n", encoding="utf-8")
    if train_per_class:
        exclude = {int(item_id.split("_")[1]) for item_id, _, _ in rows} if stem == "train" else set()
        write_fashion_mnist_train(out, per_class=train_per_class, seed=seed, source=source,
                                  exclude=exclude)
    return _i2i_task(out, "fashion_mnist_i2i", rows, split,
                     description=f"Fashion-MNIST {split} sample ({per_class} per class, seed {seed}), "
                                 "image-to-image by class", license="MIT (Zalando SE)",
                     k_values=[1, 10, 100])


def write_fashion_mnist_train(out: str | Path, *, per_class: int = TRAIN_PER_CLASS, seed: int = 0,
                              source: str | Path = FASHION_MNIST_DIR,
                              exclude: set[int] | frozenset[int] = frozenset()) -> Path:
    """``out/train.jsonl``: a seeded class-balanced sample of the Fashion-MNIST train split.

    Rows are ``{"query_image": "images_train/<label>/train_XXXXX.png", "label": "<class>"}``
    (the ``labels`` format of ``vembed-bench train``, for supervised contrastive). The
    images go to their own ``images_train/`` folder and the sample uses its own random
    stream, so the eval task's files stay byte-identical with or without it;
    ``exclude`` holds train-split indices the eval task already uses.
    """
    from PIL import Image

    from vembed_bench.atomic import atomic_open

    images, labels = _fashion_mnist_split(Path(source), "train")
    rng = np.random.default_rng([seed, 1])  # independent of the eval sample's stream
    out = Path(out)
    lines = []
    for label, class_name in enumerate(FASHION_MNIST_CLASSES):
        pool = np.array([i for i in np.flatnonzero(labels == label) if int(i) not in exclude])
        if per_class > len(pool):
            raise VembedError(f"train_per_class {per_class}: class {class_name!r} has only "
                              f"{len(pool)} train images")
        for index in np.sort(rng.choice(pool, size=per_class, replace=False)):
            rel = f"images_train/{label}/train_{index:05d}.png"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index], mode="L").save(out / rel)
            lines.append(json.dumps({"query_image": rel, "label": class_name}, ensure_ascii=False))
    path = out / "train.jsonl"
    with atomic_open(path) as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _fashion_mnist_split(source: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of one IDX split (``t10k`` or ``train``)."""
    images_path, labels_path = source / f"{stem}-images-idx3-ubyte.gz", source / f"{stem}-labels-idx1-ubyte.gz"
    if not images_path.is_file():
        raise VembedError(f"{images_path} not found; install it with "
                          "`apt-get install --no-install-recommends dataset-fashion-mnist`")
    return read_idx(images_path), read_idx(labels_path)


def tuxpaint_stamps(source: Path = TUXPAINT_DIR) -> list[tuple[Path, str]]:
    """(png, English caption) for every stamp with a caption file (first line of ``X.txt``)."""
    pairs = []
    for txt in sorted(Path(source).rglob("*.txt")):
        png = txt.with_suffix(".png")
        if not png.is_file():
            continue
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
        caption = lines[0].strip() if lines else ""
        if caption:
            pairs.append((png, caption))
    return pairs


def prepare_tuxpaint(out: str | Path, direction: str = "t2i", source: str | Path = TUXPAINT_DIR,
                     *, seed: int = 0, test_fraction: float = 0.2) -> Path:
    """Tux Paint stamps as caption retrieval. GPL-2: never commit the output.

    Identical captions are one text document (or query); every image carrying
    it is relevant to it, so several images can answer one caption. The
    distinct captions are split (seeded) into ``train`` and ``test`` qrels, the
    same split for both directions, so a model trained on the train pairs is
    scored on captions -- and images -- it never saw; the corpus is always
    every image (t2i) or every caption (i2t).
    """
    source = Path(source)
    pairs = tuxpaint_stamps(source)
    if not pairs:
        raise VembedError(f"no captioned stamps under {source}; install them with "
                          "`apt-get install --no-install-recommends tuxpaint-stamps-default`")
    out = Path(out)
    images, captions, links = [], {}, []
    for png, caption in pairs:
        rel = png.relative_to(source).as_posix()
        images.append({"_id": rel, "image": place_image(png, out, f"images/{rel}")})
        cid = "c" + hashlib.sha1(caption.encode()).hexdigest()[:12]
        captions.setdefault(cid, {"_id": cid, "text": caption})
        links.append((rel, cid))
    test = _tuxpaint_test_captions(sorted(captions), seed, test_fraction)
    if direction == "t2i":
        queries, corpus, qrels = list(captions.values()), images, [(c, i, 1) for i, c in links]
    else:
        queries, corpus, qrels = images, list(captions.values()), [(i, c, 1) for i, c in links]
    by_split = {"test": [], "train": []}
    for (rel, cid), row in zip(links, qrels):
        by_split["test" if cid in test else "train"].append(row)
    write_task(out, name=f"tuxpaint_{direction}", corpus=corpus, queries=queries, qrels=by_split["test"],
               modality="text-to-image" if direction == "t2i" else "image-to-text",
               description=f"Tux Paint stamps with their English captions ({direction}); built locally "
                           f"from the Debian package; captions split {1 - test_fraction:.0%} train / "
                           f"{test_fraction:.0%} test (seed {seed})",
               license="GPL-2.0 (do not commit)", k_values=[1, 5, 10])
    return _add_split(out, "train", by_split["train"])


def _tuxpaint_test_captions(caption_ids: list[str], seed: int, fraction: float) -> set[str]:
    """A seeded ``fraction`` of the distinct captions: the held-out queries (t2i) / answers (i2t)."""
    if not 0 < fraction < 1:
        raise VembedError(f"test_fraction must be between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(caption_ids))
    count = max(1, round(fraction * len(caption_ids)))
    return {caption_ids[i] for i in order[:count]}


def _add_split(out: Path, split: str, qrels: list[tuple[str, str, int]]) -> Path:
    """Write ``qrels/<split>.tsv`` beside the ones ``write_task`` wrote and list it in ``card.yaml``."""
    with open(out / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for qid, did, grade in qrels:
            handle.write(f"{qid}\t{did}\t{grade}\n")
    card_path = out / "card.yaml"
    card = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    card["splits"] = [*card["splits"], split]
    card_path.write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out
