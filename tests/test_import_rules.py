"""The import rules of docs/architecture.md, checked on the source with ``ast`` (nothing is imported).

Layers, lowest first: ``core`` <- ``data`` <- ``lamd | cmd | lvdm`` <- ``toy`` (demos on synthetic data)
<- ``evaluation, bench, cli``.  A package may import only from its own layer's allowed set:

- ``videogen/core``: nothing from ``videogen`` outside ``videogen.core``;
- ``videogen/data``: only ``videogen.core`` and ``videogen.data``;
- ``videogen/lamd``, ``videogen/cmd``, ``videogen/lvdm``: ``core``, ``data`` and themselves, never another
  model package, nor ``toy``, ``bench``, ``cli``, ``evaluation``;
- ``videogen/toy``: anything below ``cli`` except ``bench`` (which runs the demos);
- so nothing in core, data or a model package imports ``videogen.toy``.

Every import counts, at module level or inside a function: ``import a.b``, ``from a.b import c``, relative
``from . import x`` / ``from ..y import z`` (resolved against the importing module's package), a literal
``importlib.import_module("videogen....")`` and the absolute ``"videogen...."`` targets of a lazy-export
table (``lazy_exports`` dict keys).  ``from videogen import load_pretrained`` counts as ``videogen.core``
(the package's ``__getattr__`` imports it from there).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "videogen"

#: The top-level packages of each layer that a package under ``videogen/<key>`` may import from.
MODELS = ("lamd", "cmd", "lvdm")
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "data": {"core", "data"},
    **{m: {"core", "data", m} for m in MODELS},
    "toy": {"core", "data", *MODELS, "toy", "evaluation"},
}

#: Rule breaks that exist on purpose or are not fixed yet: ``(importing module, imported videogen part)``,
#: each with the reason.  Toy code is never listed here: it moved to ``videogen.toy``.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()

#: Names of the top-level ``videogen`` package that its ``__getattr__`` serves from a submodule.
_TOP_LEVEL_ALIASES = {"load_pretrained": "core"}
_MODULE_PATH = re.compile(r"videogen(\.[A-Za-z_][A-Za-z0-9_]*)+")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``videogen/lamd/dmg.py`` -> ``videogen.lamd.dmg``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted target)`` of every import in ``source``, relative ones made absolute.

    ``module`` is the importing module's dotted name (``is_package``: it is a package's ``__init__``, so
    ``from . import x`` means its own ``x``).  ``from a import b`` yields ``a.b`` (``b`` may be a submodule).
    """
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the top-level package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found += [(node.lineno, base if alias.name == "*" else f"{base}.{alias.name}")
                      for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "import_module" and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found + _lazy_export_targets(ast.parse(source))


def _lazy_export_targets(tree: ast.Module) -> list[tuple[int, str]]:
    """The absolute ``"videogen...."`` keys (modules) of the tables given to ``lazy_exports(package, table,
    ...)``."""
    tables = {call.args[1].id for call in ast.walk(tree) if isinstance(call, ast.Call)
              and getattr(call.func, "id", getattr(call.func, "attr", "")) == "lazy_exports"
              and len(call.args) > 1 and isinstance(call.args[1], ast.Name)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
            names = [t.id for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                     if isinstance(t, ast.Name)]
            if tables.intersection(names):
                found += [(k.lineno, k.value) for k in node.value.keys if isinstance(k, ast.Constant)
                          and isinstance(k.value, str) and _MODULE_PATH.fullmatch(k.value)]
    return found


def videogen_part(target: str) -> str | None:
    """The top-level part of ``videogen`` that ``target`` imports (``videogen.core.text`` -> ``core``);
    ``None`` for outside modules and for the bare ``videogen`` package (cheap and lazy)."""
    parts = target.split(".")
    if parts[0] != "videogen" or len(parts) == 1:
        return None
    return _TOP_LEVEL_ALIASES.get(parts[1], parts[1]) if len(parts) == 2 else parts[1]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The rule breaks of one module: ``"module:line imports target"`` for each forbidden import."""
    parts = module.split(".")
    if parts[0] != "videogen" or len(parts) < 2 or parts[1] not in ALLOWED:
        return []
    allowed = ALLOWED[parts[1]]
    out = []
    for line, target in imported_modules(source, module, is_package):
        part = videogen_part(target)
        if part is not None and part not in allowed and (module, part) not in KNOWN_VIOLATIONS:
            out.append(f"{module}:{line} imports {target}")
    return out


def _library_files() -> list[Path]:
    return sorted(p for key in ALLOWED for p in (ROOT / key).rglob("*.py"))


def test_the_packages_follow_the_import_rules():
    files = _library_files()
    assert len(files) > 40 and any(p.parent.name == "toy" for p in files)  # the walk found the packages
    broken = [v for p in files for v in violations(p.read_text(), module_name(p), p.name == "__init__.py")]
    assert not broken, "import rules (docs/architecture.md) broken:\n" + "\n".join(broken)


def test_known_violations_still_exist():
    """An entry of KNOWN_VIOLATIONS whose import is gone must be removed (the list only shrinks)."""
    seen = set()
    for p in _library_files():
        module = module_name(p)
        for _, target in imported_modules(p.read_text(), module, p.name == "__init__.py"):
            seen.add((module, videogen_part(target)))
    assert KNOWN_VIOLATIONS <= seen, KNOWN_VIOLATIONS - seen


def test_nothing_in_the_library_imports_toy():
    for p in _library_files():
        module = module_name(p)
        if module.split(".")[1] == "toy":
            continue
        targets = [t for _, t in imported_modules(p.read_text(), module, p.name == "__init__.py")]
        assert not [t for t in targets if videogen_part(t) == "toy"], module


@pytest.mark.parametrize("module, is_package, source, expected", [
    ("videogen.core.video", False, "import videogen.data", "videogen.core.video:1 imports videogen.data"),
    ("videogen.core.metrics.fid", False, "def f():\n    from ...data import synthetic",
     "videogen.core.metrics.fid:2 imports videogen.data.synthetic"),
    ("videogen.data.video", False, "from ..toy import motion",
     "videogen.data.video:1 imports videogen.toy.motion"),
    ("videogen.lamd", True, "from .. import cmd", "videogen.lamd:1 imports videogen.cmd"),
    ("videogen.lvdm.pipeline", False, "from videogen import bench",
     "videogen.lvdm.pipeline:1 imports videogen.bench"),
    ("videogen.cmd.motion_module", False,
     "class A:\n    def f(self):\n        import videogen.bench.cmd as b",
     "videogen.cmd.motion_module:3 imports videogen.bench.cmd"),
    ("videogen.lvdm", True, "X = {'videogen.evaluation': 'a'}\n_g, _d, _a = lazy_exports(__name__, X, {})",
     "videogen.lvdm:1 imports videogen.evaluation"),
    ("videogen.core.nn", True, "import importlib\nimportlib.import_module('videogen.toy.common')",
     "videogen.core.nn:2 imports videogen.toy.common"),
    ("videogen.toy.cmd", False, "from videogen.cli import main",
     "videogen.toy.cmd:1 imports videogen.cli.main"),
])
def test_the_checker_reports_a_violation(module, is_package, source, expected):
    assert violations(source, module, is_package) == [expected]


def test_the_checker_lets_allowed_imports_pass():
    source = ("import torch\nimport videogen\nfrom . import dmg\nfrom .dmg import MotionGenerator\n"
              "from videogen.core.lazy import lazy_exports\nfrom videogen.data import SyntheticVideoDataset\n"
              "_EXPORTS = {'videogen.core.text': 'TextEncoder', 'pipeline': 'LaMD'}\n"
              "__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS, globals())\n"
              "STATE = {'kind': 'videogen.cli'}\n")  # a string that names a module is not an import
    assert imported_modules(source, "videogen.lamd", is_package=True)[-1] == (7, "videogen.core.text")
    assert violations(source, "videogen.lamd", is_package=True) == []
    assert imported_modules("from . import dmg", "videogen.lamd", True) == [(1, "videogen.lamd.dmg")]
    assert imported_modules("from . import dmg", "videogen.lamd.pipeline") == [(1, "videogen.lamd.dmg")]
    assert imported_modules("from ..core import nn", "videogen.lamd.pipeline") == [(1, "videogen.core.nn")]
