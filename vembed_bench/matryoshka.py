"""Matryoshka evaluation: score many embedding sizes from one encode.

``--dims 1536,1024,768,512,256`` keeps the first N dimensions of each
embedding and renormalises them (what Matryoshka-trained models are meant
for), and evaluates every N. The model encodes once: each per-dimension run
goes through :func:`vembed_bench.pipeline.evaluate` with a
:class:`TruncatedEncoder` view, and every view shares one memo of the full
embeddings (itself read from / written to the embedding cache under the
untruncated model's key, so a later full-size run reuses it too).

Each dimension gives its own :class:`Result`, with
``model_info["matryoshka_dim"] = N``, ``embedding_dim = N`` and the *model's*
fingerprint (the leaderboard draws one score-vs-dimension curve per
fingerprint). The files go to ``results/matryoshka/dim<N>/<model>-<fp>/...``,
so they never overwrite the full-size result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vembed_bench.cache import CachePolicy, EmbeddingCache, cache_key
from vembed_bench.data.types import Item
from vembed_bench.encoders.base import l2_normalize
from vembed_bench.errors import VembedError

MATRYOSHKA_KEY = "matryoshka_dim"
_ROLES = ("query", "document")


def parse_dims(text: str | Sequence[int] | None) -> list[int] | None:
    """``"1536,1024,256"`` -> ``[1536, 1024, 256]`` (order kept, duplicates dropped)."""
    if text is None or text == "":
        return None
    try:
        values = [int(p) for p in text.split(",") if p.strip()] if isinstance(text, str) else [int(d) for d in text]
    except ValueError:
        raise VembedError(f"--dims '{text}' must be comma-separated positive integers, e.g. 768,512,256") from None
    if not values or min(values) < 1:
        raise VembedError(f"--dims '{text}' must be comma-separated positive integers, e.g. 768,512,256")
    return list(dict.fromkeys(values))


def truncate(embeddings: np.ndarray, dim: int) -> np.ndarray:
    """The first ``dim`` columns, renormalised to unit length."""
    if dim > embeddings.shape[1]:
        raise VembedError(f"cannot keep {dim} dimensions of {embeddings.shape[1]}-dimensional embeddings")
    return l2_normalize(embeddings[:, :dim])


class _SharedEmbeddings:
    """Full-size embeddings per (role, items), computed once and shared by every view."""

    def __init__(self, encoder: Any, store: EmbeddingCache) -> None:
        self.encoder = encoder
        self.store = store
        self.memo: dict[tuple[str, tuple[Any, ...]], np.ndarray] = {}
        self.encodes = 0
        description = encoder.describe()
        from vembed_bench.pipeline import CACHE_SETTING_KEYS

        self.settings = {k: description[k] for k in CACHE_SETTING_KEYS if k in description}

    def get(self, role: str, items: Sequence[Item], batch_size: int) -> np.ndarray:
        key = (role, tuple(items))
        if key not in self.memo:
            method = self.encoder.encode_queries if role == "query" else self.encoder.encode_documents

            def compute(batch: Sequence[Item]) -> np.ndarray:
                self.encodes += 1
                return method(batch, batch_size=batch_size)

            self.memo[key] = self.store.get_or_compute(
                cache_key(self.encoder.fingerprint(), role, self.settings, list(items)), list(items),
                compute, meta={"role": role, "matryoshka": True},
            )
        return self.memo[key]


class TruncatedEncoder:
    """An :class:`~vembed_bench.encoders.base.Encoder` view keeping the first ``dim`` dimensions."""

    def __init__(self, shared: _SharedEmbeddings, dim: int) -> None:
        self.shared = shared
        self.dim = dim
        self.name = getattr(shared.encoder, "name", "model")

    def encode_queries(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return truncate(self.shared.get("query", items, batch_size), self.dim)

    def encode_documents(self, items: Sequence[Item], *, batch_size: int = 32) -> np.ndarray:
        return truncate(self.shared.get("document", items, batch_size), self.dim)

    def fingerprint(self) -> str:
        """Model fingerprint + dimension: keys the pipeline's cache of the truncated arrays."""
        from vembed_bench.encoders.fingerprint import combine

        return combine("matryoshka", self.shared.encoder.fingerprint(), {MATRYOSHKA_KEY: self.dim})

    def describe(self) -> dict[str, Any]:
        return {**self.shared.encoder.describe(), MATRYOSHKA_KEY: self.dim, "dim": self.dim}


def evaluate_dims(
    task: Any,
    model: Any,
    dims: Sequence[int] | str,
    *,
    batch_size: int = 32,
    cache: CachePolicy | str = CachePolicy.USE,
    cache_dir: str | Path | None = None,
    results_dir: str | Path | None = "results",
    model_name: str | None = None,
    show_progress: bool = True,
    **options: Any,
) -> list[Any]:
    """Evaluate ``model`` at every size in ``dims`` from one encode; one Result per size.

    ``options`` are :func:`vembed_bench.pipeline.evaluate`'s (split, limit, seed,
    k_values, main_metric, backend, index) and the encoder options of
    :func:`vembed_bench.encoders.load_encoder`.
    """
    from vembed_bench.encoders.loader import load_encoder
    from vembed_bench.pipeline import evaluate

    sizes = parse_dims(dims) if isinstance(dims, str) else parse_dims(list(dims))
    if not sizes:
        raise VembedError("--dims needs at least one size")
    eval_keys = ("split", "limit", "seed", "k_values", "main_metric", "backend", "index")
    eval_options = {k: options.pop(k) for k in eval_keys if k in options}
    encoder = load_encoder(model, show_progress=show_progress, name=model_name, **options)
    store = EmbeddingCache(Path(cache_dir) / "embeddings" if cache_dir else None, cache)
    shared = _SharedEmbeddings(encoder, store)
    results = []
    for dim in sizes:
        view = TruncatedEncoder(shared, dim)
        result = evaluate(
            task, view, batch_size=batch_size, cache=CachePolicy.OFF, results_dir=None,
            model_name=model_name or encoder.name, show_progress=show_progress, **eval_options,
        )
        result.model_info["fingerprint"] = encoder.fingerprint()
        result.cache = {"policy": store.policy.value, "hits": store.hits, "misses": store.misses,
                        "shared_encode": True}
        if results_dir is not None:
            root = Path(results_dir) / "matryoshka" / f"dim{dim}"
            result.save(result.default_path(root))
        results.append(result)
    return results


def dims_table(results: Sequence[Any]) -> str:
    """A Markdown table: one row per dimension, the main metric and the other K metrics."""
    if not results:
        return ""
    scores = results[0].scores
    preferred = [m for m in ("ndcg@10", "recall@10", "mrr@10", "map@10", "recall@100") if m in scores]
    metrics = list(dict.fromkeys([results[0].main_metric, *preferred]))
    if len(metrics) < 3:  # cards without K=10: the first other metrics
        metrics = list(dict.fromkeys([*metrics, *scores]))[:5]
    lines = ["| dim | " + " | ".join(metrics) + " |", "|---:|" + "---:|" * len(metrics)]
    for r in results:
        lines.append(f"| {r.model_info.get(MATRYOSHKA_KEY, r.embedding_dim)} | "
                     + " | ".join(f"{r.scores[m]:.4f}" for m in metrics) + " |")
    return "\n".join(lines)
