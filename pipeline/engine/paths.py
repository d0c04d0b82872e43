"""The engine's own files: doit's state and the build's bookkeeping, all in the project; host-wide state.

Every path here is relative to the project (dodo.py changes into it), so the state survives a move.
Artifact paths are not the engine's business: declarations/layout.py knows those.
"""
from __future__ import annotations

import os
from pathlib import Path

DOIT_STATE = ".doit.json"                       # doit's own state (task values, file states)
STATE = ".pipeline"                             # everything else the build keeps, in one git-ignored folder
CODE_INDEX = f"{STATE}/code-index.json"         # per-module AST hashes and imports (codedeps.py)
ARTIFACT_CACHE = f"{STATE}/artifact-cache"      # the default artifact cache (cache.py)
BUILD_LOCK = f"{STATE}/build.lock"              # one building doit per project (lock.py)
RUNS = f"{STATE}/runs"                          # this run's build times (timings.py)
NOOP_SNAPSHOTS = f"{STATE}/noop"                # a no-op call's file stats, replayed by the next (noop.py)
HAND_EDITS = f"{STATE}/hand-edits"              # hand-edited published files `doit clean` moved aside (publish.py)
MANIFEST_BACKUPS = f"{STATE}/manifest-backups"  # a manifest as it was before `doit adopt-config` wrote it


def state_dir(name: str) -> str:
    """A folder of the project's state for one tool's own files (settings, font caches): inside the
    project, never in the user's home."""
    return f"{STATE}/{name}"


def host_dir() -> Path:
    """State shared by every checkout and user session on this host (locks per GPU, TensorRT timing caches):
    $XDG_CACHE_HOME/triton-export-pipeline, by default ~/.cache/triton-export-pipeline."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "triton-export-pipeline"
