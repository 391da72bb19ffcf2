"""Image encoding throughput: DataLoader workers (what the encoders use) vs a plain loop.

The plain loop opens, decodes and preprocesses each batch in the main process
and then runs the model, so the model waits for the JPEG decoder and vice
versa. ``vembed_bench.encoders.image_io.image_batches`` does the decoding on
``--workers`` processes while the main process runs the model. Both paths feed
the same model the same tensors (checked), so only the time differs.

    .venv/bin/python benchmarks/bench_image_encode.py --model FOLDER --images DIR [--workers 1,2] [--limit 256]

``FOLDER`` is any image model folder (timm, HF vision, CLIP); ``DIR`` any folder
of images (e.g. one written by ``vembed-bench prepare fashion-mnist``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    import numpy as np
    import torch

    from vembed_bench.data.types import Item
    from vembed_bench.encoders.image_io import open_image, stack_batch
    from vembed_bench.encoders.loader import load_encoder

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=256)
    args = parser.parse_args()

    paths = sorted(p for p in Path(args.images).rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    items = [Item(str(i), image=p) for i, p in enumerate(paths[: args.limit])]
    encoder = load_encoder(args.model, show_progress=False, num_workers=0)
    transform = encoder._image_transform()
    encoder.encode_documents(items[: args.batch_size], batch_size=args.batch_size)  # warm-up

    start = time.perf_counter()
    plain = []
    for s in range(0, len(items), args.batch_size):
        batch = stack_batch([transform(open_image(it.image)) for it in items[s: s + args.batch_size]])
        plain.append(encoder._encode_image_batch(batch))
    plain_s = time.perf_counter() - start
    reference = np.vstack(plain)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    print(f"model {args.model}, {len(items)} images, batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    print(f"| path | workers | images/s |\n|---|---|---|\n| plain loop | 0 | {len(items) / plain_s:.1f} |")
    for workers in [int(w) for w in args.workers.split(",") if w.strip()]:
        encoder.num_workers = workers
        encoder._image_memo = {}  # no reuse of vectors from the previous run
        start = time.perf_counter()
        got = encoder.encode_documents(items, batch_size=args.batch_size)
        seconds = time.perf_counter() - start
        assert np.allclose(got, reference, atol=1e-4), "worker path changed the embeddings"
        print(f"| DataLoader | {workers} | {len(items) / seconds:.1f} |")


if __name__ == "__main__":
    main()
