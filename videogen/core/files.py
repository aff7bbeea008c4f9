"""Files a later run trusts are written whole or not at all, and one writer holds an output folder.

* :func:`atomic_path`: yields a temporary name in the target's folder (same suffix, so writers that pick
  the format from it still work); on success it is renamed over the target (``os.replace``, atomic on
  one filesystem), on failure removed.  A process killed mid-write leaves only a hidden ``.*.tmp-*``
  file, never a half-written file under the final name; the next successful write of that name removes
  what dead processes of this host left (:func:`remove_stale_temporaries`).
* :func:`atomic_write_text`: the same for a text file (manifests, metrics JSON).
* :class:`FolderLock`: an exclusive lock file in an output folder; a second writer fails with one line
  naming the holder (host and pid). A lock left by a process that no longer runs on this host is taken
  over.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FolderLock", "FolderLockedError", "TEMP_MARK", "atomic_path", "atomic_write_text", "is_temporary",
           "remove_stale_temporaries", "temporary_tag"]

TEMP_MARK = ".tmp-"
#: what follows ``TEMP_MARK`` in a temporary name: ``HOST-PID`` then the suffix or ``.RANDOM``
_OWNER = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)(?:\..*)?$")


def temporary_tag() -> str:
    """``HOST-PID`` of this process, written into its temporary names so that a later run can tell the
    leftovers of dead processes from a write in progress."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _process_alive(host: str, pid: int) -> bool:
    """Whether ``pid`` runs on ``host``; another host's process cannot be checked, so it counts as alive."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, name: str) -> list[Path]:
    """Remove ``folder/.{name}.tmp-HOST-PID*`` files and folders whose process (of this host) no longer
    runs: what a killed writer of ``name`` left.  Writes in progress, other hosts' temporaries and names
    without an owner are kept.  Returns what was removed."""
    removed = []
    prefix = f".{name}{TEMP_MARK}"
    for entry in Path(folder).glob(glob.escape(prefix) + "*"):
        owner = _OWNER.match(entry.name[len(prefix):])
        if owner is None or _process_alive(owner["host"], int(owner["pid"])):
            continue
        try:  # best effort: a leftover that cannot be removed (another user's) must not fail the write
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue
        removed.append(entry)
    return removed


def is_temporary(path: str | os.PathLike) -> bool:
    """A temporary file of :func:`atomic_path` (left behind by a killed writer): skip it when reading."""
    name = Path(path).name
    return name.startswith(".") and TEMP_MARK in name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}{TEMP_MARK}{temporary_tag()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
        remove_stale_temporaries(path.parent, path.stem)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path` (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


class FolderLockedError(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """``with FolderLock(folder, "generate"):`` holds ``folder/.videogen.lock`` for the block."""

    NAME = ".videogen.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "videogen") -> None:
        self.path = Path(folder) / self.NAME
        self.what = what
        self._held = False

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, _, pid = self.path.read_text().strip().partition(":")
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def __enter__(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()}:{os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _process_alive(*holder):
                    raise FolderLockedError(f"{self.path.parent} is in use by another {self.what} run (host "
                                            f"{holder[0]}, pid {holder[1]}); wait for it or write elsewhere "
                                            f"(remove {self.path} if that run is gone)") from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # a stale lock of a process that no longer runs
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            self._held = True
            return self
        raise FolderLockedError(f"could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False
