"""videogen.core.files: temporaries name their writer (host and pid), and a successful write removes what
killed writers of the same name on this host left, never a write in progress or another host's."""

from __future__ import annotations

import socket
import subprocess
import sys

from videogen.core.files import atomic_write_text, remove_stale_temporaries, temporary_tag
from videogen.core.persistence import write_directory


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_the_leftovers_of_dead_processes_of_this_host_are_removed(tmp_path):
    host, dead = socket.gethostname(), _dead_pid()
    leftovers = [tmp_path / f".model.tmp-{host}-{dead}.abc123", tmp_path / f".clip.tmp-{host}-{dead}.mp4"]
    leftovers[0].mkdir()
    (leftovers[0] / "model.safetensors").write_bytes(b"x" * 100)
    leftovers[1].write_bytes(b"half a video")
    kept = [tmp_path / f".model.tmp-{temporary_tag()}.xyz",  # a write in progress (this process)
            tmp_path / f".model.tmp-another-host-{dead}.q1",  # another machine's: cannot be checked
            tmp_path / ".model.tmp-12345",  # no owner in the name
            tmp_path / f".other.tmp-{host}-{dead}.q2"]  # another name's
    for path in kept:
        path.write_text("")
    assert remove_stale_temporaries(tmp_path, "model") == [leftovers[0]]
    assert remove_stale_temporaries(tmp_path, "clip") == [leftovers[1]]
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)


def test_successful_writes_clean_their_names_leftovers(tmp_path):
    host, dead = socket.gethostname(), _dead_pid()
    stale_dir = tmp_path / f".weights.tmp-{host}-{dead}.zz9"
    stale_dir.mkdir()
    stale_file = tmp_path / f".metrics.tmp-{host}-{dead}.json"
    stale_file.write_text("{")
    with write_directory(tmp_path / "weights") as tmp:
        assert tmp.name.startswith(f".weights.tmp-{temporary_tag()}.")
        (tmp / "a.txt").write_text("a")
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "weights"]


def test_a_leftover_that_cannot_be_removed_does_not_fail_the_write(tmp_path, monkeypatch):
    """Another user's leftover in a shared folder (removal refused): the new folder is in place, no error."""
    import videogen.core.files as files

    stale = tmp_path / f".weights.tmp-{socket.gethostname()}-{_dead_pid()}.q"
    stale.mkdir()

    def refuse(path, *args, **kwargs):
        raise PermissionError(f"not yours: {path}")

    monkeypatch.setattr(files.shutil, "rmtree", refuse)
    with write_directory(tmp_path / "weights") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "weights" / "a.txt").read_text() == "a" and stale.is_dir()
