"""Build times: each built step's seconds go into its record and into this run's list; a building run
ends with its slowest steps in one short summary (printed by the process that loaded dodo.py).

`doit -n N` workers are separate processes: each appends one line per step to the run's file
(.pipeline/runs/<run id>.jsonl, appends of a few bytes are atomic), and the parent reads it at exit.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import paths

RUN_VAR = "PIPELINE_RUN_ID"


def _file() -> Path | None:
    run = os.environ.get(RUN_VAR)
    return Path(paths.RUNS) / f"{run}.jsonl" if run else None


def start_run() -> None:
    """Called while loading dodo.py for a building command; children and workers inherit the id."""
    os.environ[RUN_VAR] = f"{os.getpid()}"


def record(task: str, seconds: float) -> None:
    path = _file()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps({"task": task, "seconds": round(seconds, 2)}) + "\n")
    except OSError:
        pass  # a summary is not worth failing a build for


def summary(top: int = 5) -> str | None:
    """"built 7 steps in 9.8 s; slowest: export_onnx:s 3.1 s, ..." (and the run's file removed)."""
    path = _file()
    if path is None or not path.exists():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.unlink()
    except (OSError, ValueError):
        return None
    if not rows:
        return None
    rows.sort(key=lambda r: -r["seconds"])
    slowest = ", ".join(f"{r['task']} {r['seconds']:.1f} s" for r in rows[:top])
    total = sum(r["seconds"] for r in rows)
    return f"built {len(rows)} step(s), {total:.1f} s of build time; slowest: {slowest}"


def print_summary() -> None:
    import sys

    text = summary()
    if text and os.environ.get(RUN_VAR) == f"{os.getpid()}":
        sys.stderr.write(text + "\n")
