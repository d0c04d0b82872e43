"""`doit -n N`: N workers share the machine's cores instead of each taking them all.

torch and onnxruntime each start one thread per core by default; N workers doing that on C cores run
N x C busy threads and fight (measured: `-n 2` was no faster than `-n 1` on 2 cores). When doit is asked
for N > 1 workers, each gets C // N threads: OMP_NUM_THREADS for torch (read when a worker first
imports it; the process that loads dodo.py never does), and `threads()` for onnxruntime sessions.
A value the user set in the environment wins.
"""
from __future__ import annotations

import os
import sys

THREADS_VAR = "PIPELINE_THREADS"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def workers(argv: list[str]) -> int:
    """doit's -n/--process value on the command line (1 when absent)."""
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-n", "--process") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--process="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-n") and arg[2:].isdigit():
            value = arg[2:]
        if value is not None and value.isdigit():
            return max(1, int(value))
    return 1


def share_cores(argv: list[str]) -> None:
    n = workers(argv)
    if n <= 1:
        return
    per_worker = str(max(1, cores() // n))
    os.environ.setdefault(THREADS_VAR, per_worker)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, os.environ[THREADS_VAR])


def threads() -> int | None:
    """This worker's thread budget, or None (the libraries' defaults: every core)."""
    value = os.environ.get(THREADS_VAR, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def apply_to_torch() -> None:
    """In a worker that already imported torch (an earlier step), hold it to the budget too."""
    n = threads()
    if n and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def session_options():
    """onnxruntime SessionOptions within the budget, quiet."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    n = threads()
    if n:
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
    return opts
