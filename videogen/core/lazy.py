"""Lazy package exports: names load their submodule on first access, so importing a package stays cheap."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], namespace: Mapping[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Module-level ``__getattr__``, ``__dir__`` and ``__all__`` for ``package``.

    ``exports`` maps each submodule (relative to ``package``, or an absolute ``videogen.*`` module for
    names re-exported from elsewhere) to the public names it defines, space-separated;
    ``namespace`` is the package's ``globals()`` (for ``dir()``).
    """
    where = {name: module for module, names in exports.items() for name in names.split()}

    def __getattr__(name: str) -> Any:
        if name in where:
            module = where[name]  # relative to the package, or absolute ("videogen.core.text")
            full = module if module.startswith("videogen.") else f"{package}.{module}"
            return getattr(importlib.import_module(full), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__, list(where)
