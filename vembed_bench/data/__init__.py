"""Task data: the task model, task cards, and the loaders that produce :class:`TaskData`."""

from vembed_bench.data.cards import TaskCard, list_cards, resolve_card
from vembed_bench.data.loading import data_fingerprint, load_task, register_loader
from vembed_bench.data.types import Item, Qrels, TaskData

__all__ = [
    "Item", "Qrels", "TaskCard", "TaskData", "data_fingerprint", "list_cards",
    "load_task", "register_loader", "resolve_card",
]
