"""Moved to :mod:`vembed_bench.data.mteb_local` (task loading must not import upward);
kept so ``from vembed_bench.integrations.mteb_local import beir_as_mteb_task`` still works."""

from vembed_bench.data.mteb_local import beir_as_mteb_task

__all__ = ["beir_as_mteb_task"]
