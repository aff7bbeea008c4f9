"""The ``videogen`` command line (also ``python -m videogen``).

Training runs through Lightning's CLI; a few tool commands are dispatched before it::

    videogen fit|validate|test|predict --config recipes/<recipe>.yaml [--ckpt_path ...]   (LightningCLI)
    videogen demo     [--model all|lamd|cmd|lvdm] --out DIR   CPU demos on synthetic data (default: all three)
    videogen bench    --out DIR [--only a,b] [--quick]       paper tables -> results.json, docs/bench.md
    videogen sample   --model DIR --out DIR [...]            generate from a save_pretrained directory / .ckpt
    videogen generate --model M --recipe R --out DIR         N samples per item of a split (test-set
    generation)
    videogen evaluate --real DIR --fake DIR --metric fvd     streaming metrics on two folders of videos
    videogen convert  lvdm|cmd --ckpt FILE --out DIR         official checkpoints -> a save_pretrained folder
    videogen cache    --recipe R --out DIR                   a recipe's data through its frozen stages

Recipes use ``class_path``/``init_args`` for the model and the data module (subclass mode), and
unknown keys are errors: a misspelt hyperparameter never passes silently.  Heavy libraries (torch,
lightning) are imported only once a command needs them, so ``videogen --help`` is instant.

The package: ``parsers`` (the tool commands' arguments and the constants), ``commands`` (what each tool
command does), ``lightning`` (``VideogenCLI``), ``errors`` (what is reported in one line); this module
dispatches and reports.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from .commands import TOOLS, _instantiate, _read_recipe, _recipe_class  # noqa: F401 (re-exported)
from .errors import USER_ERROR_TYPES, CommandError, compact_parser_error, user_error  # noqa: F401
from .lightning import videogen_cli_class
from .parsers import LIGHTNING_COMMANDS, LVDM_PRESETS, TOOL_COMMANDS, USAGE, tool_parser  # noqa: F401

__all__ = ["LIGHTNING_COMMANDS", "TOOL_COMMANDS", "CommandError", "main", "user_error"]


def __getattr__(name: str) -> Any:
    if name == "VideogenCLI":
        return videogen_cli_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dispatch(argv: list[str], from_sys_argv: bool) -> int:
    command = argv[0]
    if command in TOOLS:
        return TOOLS[command](tool_parser(command).parse_args(argv[1:]))
    if command in LIGHTNING_COMMANDS:
        # args=None lets LightningCLI read sys.argv itself (it warns when given both)
        videogen_cli_class()(args=None if from_sys_argv else argv)
        return 0
    print(f"videogen: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``videogen``; returns the exit status.

    Errors a user can cause (see :func:`user_error`) print ``videogen: error: <message>`` on stderr and
    return 2; ``--debug`` (anywhere on the command line) or ``VIDEOGEN_DEBUG=1`` shows the traceback
    instead. Unexpected errors keep their traceback. Bad recipe keys and values are reported by
    jsonargparse in the same ``videogen: error:`` form (exit code 2).
    """
    from_sys_argv = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VIDEOGEN_DEBUG", "") not in ("", "0")
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        if from_sys_argv:  # LightningCLI parses sys.argv itself
            sys.argv = [sys.argv[0], *argv]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        from videogen import __version__

        print(f"videogen {__version__}")
        return 0
    try:
        return _dispatch(argv, from_sys_argv)
    except argparse.ArgumentError as exc:  # a bad recipe key or value (jsonargparse, exit_on_error=False)
        if debug:
            raise
        print(f"videogen: error: {compact_parser_error(str(exc))}", file=sys.stderr)
        return 2
    except Exception as exc:
        cause = None if debug else user_error(exc)
        if cause is None:
            raise
        message = " ".join(str(cause).split())  # one line
        print(f"videogen: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2
