"""Named registries: extractors, matchers. A new one is one file that calls ``register``.

Built-in adapters live in ``imc/features/<name>.py`` and ``imc/matchers/<name>.py`` and are found by
name (imported on first lookup); out-of-tree ones are modules named in the config's ``plugins``
list, imported before the config is checked.
"""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._items: dict[str, T] = {}

    def register(self, item: T) -> T:
        name = getattr(item, "name")
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice ({self._items[name]!r} and {item!r})")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            try:  # a built-in adapter: imc/<package>/<name>.py registers itself on import
                importlib.import_module(f"{self.package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{self.package}.{name}":
                    raise
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {sorted(self.names())} "
                                   f"(a new one is a module that registers it, listed under `plugins:`)")
        return self._items[name]

    def names(self) -> list[str]:
        pkg = importlib.import_module(self.package)
        from pkgutil import iter_modules

        builtin = [m.name for m in iter_modules(pkg.__path__) if not m.name.startswith("_")]
        return sorted(set(builtin) | set(self._items))

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownNameError:
            return False
        return True


def import_plugins(modules: list[str] | None) -> None:
    for module in modules or []:
        importlib.import_module(module)
