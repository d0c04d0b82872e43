"""One building doit per project at a time: a file lock held until the process exits."""
from __future__ import annotations

import atexit
import fcntl
import os
import sys
from pathlib import Path

from ..declarations import layout

_LOCK = None


def hold_build_lock(root: Path = Path(".")) -> None:
    """Take the project's build lock; a second doit waits, saying why."""
    global _LOCK
    path = root / layout.BUILD_LOCK
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
