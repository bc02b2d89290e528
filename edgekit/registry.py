"""The one registration mechanism: named algorithms, targets, placements, tasks, models and transports.

Each registry maps a name to an object (a function, a ``Target``, a factory). Registration is
explicit, by decorator or call, in the module that defines the object; ``edgekit.plugins``
imports those modules once so that the registries are full.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgekit.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of objects of one kind (``kind`` is used in error messages)."""

    def __init__(self, kind: str, flag: str | None = None) -> None:
        self.kind = kind
        self.flag = flag
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
        from edgekit import plugins  # noqa: F401  (fills the registries on first use)
        try:
            return self._items[name]
        except KeyError:
            hint = f" ({self.flag})" if self.flag else ""
            raise UserError(
                f"unknown {self.kind} {name!r}{hint}: known ones are {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        from edgekit import plugins  # noqa: F401
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
