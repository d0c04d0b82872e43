"""Content hashes: one SHA-256 per file per process, shared by the runner, the cache and doit's file checker
(step.SHA256Checker)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_HASHES: dict[tuple, str] = {}


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, remembered for this process by (device, inode, size, mtime): within one run an
    artifact is an output, then an input of the next steps; artifacts are replaced by rename, never
    rewritten in place, so a changed file has a new identity."""
    st = os.stat(path)
    ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    if ident not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _HASHES[ident] = h.hexdigest()
    return _HASHES[ident]
