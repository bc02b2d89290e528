"""The one registration mechanism: named algorithms, targets, placements, tasks, models, runtimes and transports.

Each registry maps a name to an object (a function, a ``Target``, a factory). Registration is
explicit, by decorator or call, in the module that defines the object; ``edgekit.plugins``
imports those modules once so that the registries are full.
"""
from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterator, TypeVar

from edgekit.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str, flag: str | None = None, plugins: str = "edgekit.plugins") -> None:
        self.kind = kind
        self.flag = flag
        self.plugins = plugins  # the module whose import registers this kind's objects
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` return a decorator.

        Raises ValueError when ``name`` is already taken.
        """
        def add(o: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = o
            return o
        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """Return the object named ``name``; raises UserError listing the known names."""
        importlib.import_module(self.plugins)  # fills the registry on first use
        try:
            return self._items[name]
        except KeyError:
            hint = f" ({self.flag})" if self.flag else ""
            raise UserError(
                f"unknown {self.kind} {name!r}{hint}: known ones are {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        importlib.import_module(self.plugins)
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


ALGORITHMS: Registry = Registry("quantization method", "--method")
TARGETS: Registry = Registry("target", "--target")
MODELS: Registry = Registry("zoo model")
TRANSPORTS: Registry = Registry("device transport", "--device")
SYNTHESIZERS: Registry = Registry("data synthesizer")
PLACEMENTS: Registry = Registry("placement policy")
TASKS: Registry = Registry("task", "--task")
# runtimes register from a torch-free list: the profiling agent looks them up on devices without torch
RUNTIMES: Registry = Registry("runtime", "--runtime", plugins="edgekit.runtimes.plugins")
