"""videogen: efficient video diffusion models (LaMD, CMD, LVDM) on one shared core.

Importing this package is cheap: submodules (and torch-heavy code) load on first attribute access.

    >>> import videogen
    >>> pipe = videogen.load_pretrained("outputs/demo/lamd")  # doctest: +SKIP  (LaMD, CMD or LVDM)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("core", "data", "lamd", "cmd", "lvdm", "toy", "bench", "cli")


def __getattr__(name: str):
    if name == "load_pretrained":  # any model's save_pretrained directory or final-stage checkpoint
        from videogen.core.persistence import load_pretrained

        return load_pretrained
    if name in _SUBMODULES:
        return importlib.import_module(f"videogen.{name}")
    raise AttributeError(f"module 'videogen' has no attribute {name!r}")


__all__ = ["__version__", "load_pretrained", *_SUBMODULES]
