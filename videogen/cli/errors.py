"""What the CLI reports in one ``videogen: error:`` line (a user's mistake) and what keeps its traceback."""

from __future__ import annotations

from pathlib import Path

from videogen.core.files import FolderLockedError  # stdlib only: --help stays instant

__all__ = ["USER_ERROR_TYPES", "CommandError", "compact_parser_error", "user_error"]


class CommandError(ValueError):
    """A mistake in a command's input that the user can fix; reported as one ``videogen: error:`` line."""


#: exception types that a user's input can cause (bad value, missing file or weights, NaN training loss);
#: reported as one line when videogen's own code raised them, with a traceback otherwise
USER_ERROR_TYPES = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                    FloatingPointError, FolderLockedError)
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # videogen/


def _raised_by_videogen(exc: BaseException) -> bool:
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR)


def user_error(exc: BaseException) -> BaseException | None:
    """The exception to report in one line, or None to keep the traceback.

    Follows the ``raise ... from`` chain (LightningCLI/jsonargparse wrap an error raised while building a
    class in "Does not validate against any of the Union subtypes") to the innermost exception of a
    :data:`USER_ERROR_TYPES` type that videogen's own code raised.
    """
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    for candidate in reversed(chain):
        if isinstance(candidate, USER_ERROR_TYPES) and _raised_by_videogen(candidate):
            return candidate
    return None


def compact_parser_error(message: str) -> str:
    """jsonargparse's multi-line Union report -> ``Parser key "k": <the errors that are not 'None'>``."""
    message = " ".join(message.split())
    if " Errors: " not in message:
        return message
    head = message.split(": Does not validate", 1)[0]
    body = message.split(" Errors: ", 1)[1]
    given = body.split(" Given value: ", 1)[1] if " Given value: " in body else None
    body = body.split(" Given value type: ", 1)[0]
    errors = [e.strip() for e in body.split(" - ") if e.strip(" -") and "Expected a <class 'NoneType'>"
              not in e]
    errors = [e.lstrip("- ") for e in errors]
    text = f"{head}: {'; '.join(errors) or body}"
    return text + (f" (given: {given})" if given and "Option '" not in text else "")
