"""`python -m pipeline.engine.isolated JOB.json`: run one step builder in its own process (Step.isolate).

Used for TensorRT builds: CUDA and TensorRT are initialised here, never in the process that loaded
dodo.py (doit forks its `-n N` workers from that one, and a forked CUDA context is unusable).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .errors import UserError
from .runner import call_builder, context_for


def main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    ctx = context_for(job["spec"], {Path(f): Path(t) for f, t in job["tmp"]})
    try:
        out = {"verification": call_builder(job["spec"]["builder"], ctx), "kept": [str(p) for p in ctx.kept]}
    except UserError as e:
        out = {"user_error": {"message": e.message, "file": e.file, "key": e.key, "fix": e.fix}}
    Path(job["result"]).write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
