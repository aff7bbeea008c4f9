"""Resolve external pretrained weights (I3D, Inception, LPIPS backbones, CLIP, Stable Diffusion parts).

videogen never downloads weights by itself at import or test time. A user names a local file, a
directory holding the file, or (for hub-backed libraries such as diffusers/transformers) a hub id that
the library resolves from its own cache. When nothing is found, the error says which file is missing
and how to get it.

Lookup order for :func:`resolve_weight_file`:

1. ``path`` if it is an existing file;
2. ``path / filename`` if ``path`` is an existing directory;
3. ``$VIDEOGEN_CACHE/filename`` (default ``~/.cache/videogen/filename``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MissingWeightsError", "cache_dir", "load_stage_network", "missing_stage_checkpoint",
           "resolve_weight_file", "submodule_state"]


class MissingWeightsError(FileNotFoundError):
    """A pretrained weight file is not on this machine. The message says how to obtain it."""


def cache_dir() -> Path:
    """The directory videogen looks in for weight files: ``$VIDEOGEN_CACHE`` or ``~/.cache/videogen``."""
    return Path(os.environ.get("VIDEOGEN_CACHE", Path.home() / ".cache" / "videogen")).expanduser()


def resolve_weight_file(path: str | os.PathLike | None, filename: str, how_to_get: str) -> Path:
    """Return the path of an existing weight file or raise :class:`MissingWeightsError`.

    Args:
        path: a file, a directory containing ``filename``, or None (use the cache directory only).
        filename: canonical file name, e.g. ``"i3d_pretrained_400.pt"``.
        how_to_get: one sentence telling the user where the file comes from.
    """
    tried: list[Path] = []
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        tried.append(p)
        if p.is_dir():
            if (p / filename).is_file():
                return p / filename
            tried.append(p / filename)
    cached = cache_dir() / filename
    if cached.is_file():
        return cached
    tried.append(cached)
    looked = ", ".join(str(t) for t in tried)
    raise MissingWeightsError(
        f"weight file {filename!r} not found (looked in: {looked}). {how_to_get} "
        f"Put it in {cache_dir()} (or set VIDEOGEN_CACHE) or pass its path explicitly."
    )


def submodule_state(checkpoint: dict, prefix: str) -> dict:
    """The entries of a Lightning checkpoint's ``state_dict`` under ``prefix`` (``"autoencoder."``), prefix
    removed."""
    return {k[len(prefix):]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def missing_stage_checkpoint(path: str | os.PathLike, what: str, recipe_pattern: str,
                             fallback_hint: str) -> FileNotFoundError:
    """The error for an earlier stage's checkpoint that is not there: it names the recipe that writes it when
    ``path`` matches ``recipe_pattern`` (one group: the recipe name), else says ``fallback_hint``."""
    import re

    match = re.search(recipe_pattern, str(path))
    hint = (f": train it first (videogen fit --config recipes/{match.group(1)}.yaml writes it)" if match
            else f" ({fallback_hint})")
    return FileNotFoundError(f"{what} checkpoint {path} not found{hint}")


def load_stage_network(path: str | os.PathLike, network_cls: type, component: str, recipe_pattern: str,
                       fallback_hint: str, map_location: str | object = "cpu"):
    """A trained earlier stage's network: a ``save_pretrained`` directory, or the ``component`` of the
    pipeline record in the Lightning checkpoint of the stage that trained it (read with
    ``weights_only=True``).  A missing file names the recipe that writes it when the path matches
    ``recipe_pattern`` (one group: the recipe name), else says ``fallback_hint``."""
    from .persistence import load_component

    path = Path(path)
    if not path.exists():
        raise missing_stage_checkpoint(path, network_cls.__name__, recipe_pattern, fallback_hint)
    return load_component(path, component, network_cls, map_location=map_location)
