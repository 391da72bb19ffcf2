"""One registration style for every extension point.

Task loaders, encoder types (dense and multi-vector), losses, search backends
and training backends are each a :class:`Registry`: a name (plus aliases) maps
to an object, given either directly (``@LOADERS.register("beir")`` on a
function or class) or lazily as ``"module:attribute"`` (``LOSSES.lazy("infonce",
"vembed_bench.train.losses.infonce:InfoNCELoss")``), or as ``"module"`` when the
module itself is the plugin (a training backend module with ``build`` and
``eval_options``), so that registering costs no import and ``vembed-bench --help``
never imports torch. Each entry may carry
metadata (an encoder type's folder detector, whether it is multi-vector), and
entries keep their registration order, which is the order detectors run in.

A lookup of an unknown name raises one :class:`~vembed_bench.errors.VembedError`
line listing the known names.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, TypeVar

from vembed_bench.errors import VembedError

T = TypeVar("T")


@dataclass
class Entry(Generic[T]):
    """One registered plugin: its target (an object, or ``"module:attribute"``) and metadata."""

    name: str
    target: T | str
    aliases: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> T:
        """The registered object, importing its module the first time."""
        if isinstance(self.target, str):
            module, _, attribute = self.target.partition(":")
            loaded = importlib.import_module(module)
            self.target = getattr(loaded, attribute) if attribute else loaded
        return self.target  # type: ignore[return-value]


class Registry(Generic[T]):
    """Named plugins of one kind (``kind`` names it in error messages, e.g. "search backend")."""

    def __init__(self, kind: str, *, hint: str = "") -> None:
        self.kind = kind
        self.hint = hint
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, target: T | None = None, *, aliases: tuple[str, ...] = (),
                 first: bool = False, **meta: Any) -> Any:
        """Register ``target`` under ``name``; without ``target``, a decorator that does so.

        ``first=True`` puts the entry before the others (a more specific folder
        detector that must run before a general one). Registering a name again
        replaces the old entry.
        """
        if target is None:
            def decorate(obj: T) -> T:
                self._add(Entry(name, obj, tuple(aliases), meta), first)
                return obj
            return decorate
        self._add(Entry(name, target, tuple(aliases), meta), first)
        return target

    def lazy(self, name: str, target: str, *, aliases: tuple[str, ...] = (), first: bool = False,
             **meta: Any) -> None:
        """Register ``"module:attribute"`` (or a whole ``"module"``), imported on first :meth:`get`."""
        module, _, attribute = target.partition(":")
        if not module or (":" in target and not attribute):
            raise ValueError(f"lazy target {target!r} must look like 'module:attribute' or 'module'")
        self._add(Entry(name, target, tuple(aliases), meta), first)

    def _add(self, entry: Entry[T], first: bool) -> None:
        self._entries.pop(entry.name, None)
        if first:
            self._entries = {entry.name: entry, **self._entries}
        else:
            self._entries[entry.name] = entry

    def remove(self, name: str) -> None:
        """Forget an entry (a plugin's tests clean up after themselves); unknown names are ignored."""
        self._entries.pop(name, None)

    def entry(self, name: str) -> Entry[T]:
        """The entry for a name or alias (case-insensitive), else a one-line error."""
        key = str(name).strip().lower()
        for entry in self._entries.values():
            if key == entry.name.lower() or key in (alias.lower() for alias in entry.aliases):
                return entry
        hint = f" {self.hint}" if self.hint else ""
        raise VembedError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}{hint}")

    def get(self, name: str) -> T:
        return self.entry(name).load()

    def __contains__(self, name: object) -> bool:
        try:
            self.entry(str(name))
        except VembedError:
            return False
        return True

    def names(self) -> list[str]:
        return list(self._entries)

    def __iter__(self) -> Iterator[str]:
        """The registered names, in order (so ``for name in REGISTRY`` reads like a dict)."""
        return iter(self.names())

    def entries(self) -> Iterator[Entry[T]]:
        """Entries in order (``first=True`` entries ahead of the rest)."""
        return iter(list(self._entries.values()))

    def find(self, predicate: Callable[[Entry[T]], bool]) -> Entry[T] | None:
        """The first entry, in order, for which ``predicate`` is true."""
        return next((entry for entry in self.entries() if predicate(entry)), None)
