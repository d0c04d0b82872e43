"""A successful building run ends without Python's teardown of torch and onnxruntime.

Once doit has run the tasks, saved its state and reported, the interpreter would only unload what the
builders imported: ~0.9 s of module and thread-pool teardown after exporting yolo11s, a tenth of the
whole command. So a run that succeeded leaves right after the exit handlers registered after this one
(the build summary, the build lock, any a library registered while building): stdout and stderr are
flushed and the process exits with status 0 at once. A run that failed, was interrupted, or ended any
other way exits as Python always does.
"""
from __future__ import annotations

import atexit
import os
import sys

_PID = os.getpid()
_SUCCEEDED = False


def install() -> None:
    """Called early while dodo.py loads, so that handlers registered later still run first."""
    atexit.register(_leave)


def succeeded() -> None:
    """doit reported the run complete with no failure, and no exception is on its way out."""
    global _SUCCEEDED
    _SUCCEEDED = sys.exc_info()[0] is None


def _leave() -> None:
    if not _SUCCEEDED or os.getpid() != _PID:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # a closed pipe: exit the usual way, which reports it
        return
    os._exit(0)
