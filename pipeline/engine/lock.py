"""Locks: one building doit per project; one holder of a host-wide resource (a GPU) at a time."""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import sys
from pathlib import Path

from . import paths

_LOCK = None


def hold_build_lock(root: Path = Path(".")) -> None:
    """Take the project's build lock, held until the process exits; a second doit waits, saying why."""
    global _LOCK
    path = root / paths.BUILD_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    _LOCK = open(path, "a+")
    atexit.register(_LOCK.close)
    try:
        fcntl.flock(_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _LOCK.seek(0)
        holder = _LOCK.read().strip() or "?"
        sys.stderr.write(f"notice: another doit is building this project (pid {holder}); waiting for it to "
                         "finish...\n")
        sys.stderr.flush()
        fcntl.flock(_LOCK, fcntl.LOCK_EX)
    _LOCK.seek(0)
    _LOCK.truncate()
    _LOCK.write(str(os.getpid()))
    _LOCK.flush()


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive lock on `path` (created), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def host_lock(resource: str):
    """One holder of `resource` (e.g. a GPU, by its UUID) at a time on this host: every checkout, `doit -n N`
    worker and user of the machine takes the same lock file."""
    return file_lock(paths.host_dir() / "locks" / f"{resource}.lock")
