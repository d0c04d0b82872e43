"""Load the manifest for dodo.py fast: a validated manifest is cached as JSON keyed on its content.

A no-op `doit` must cost little more than doit's own startup, and importing pydantic + yaml alone costs
about as much as doit itself. So the schema module (`manifest.py`) runs only when the manifest text, the
`custom=` value or the schema code changed; otherwise the resolved records come from
`.pipeline/manifests/<key>.json`. Invalid manifests are never cached.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import UserError

CACHE_DIR = Path(".pipeline") / "manifests"
_SCHEMA = Path(__file__).with_name("manifest.py")


def load_models(manifest: str, custom: str | None, root: Path, explicit_manifest: bool = True) -> list[dict]:
    path = Path(manifest)
    try:
        text = path.read_bytes()
    except OSError:
        text = b""  # let the schema module produce the error paragraph
    standalone = bool(custom) and not explicit_manifest
    key = hashlib.sha256(b"\0".join([
        text, str(path.absolute()).encode(), (custom or "").encode(), b"standalone" if standalone else b"",
        _SCHEMA.read_bytes(), str(root.absolute()).encode(),
    ])).hexdigest()[:24]
    cached = root / CACHE_DIR / f"{key}.json"
    if text and cached.exists():
        records = json.loads(cached.read_text())
    else:
        from .manifest import resolve  # pydantic + yaml: only when the manifest changed
        records = resolve(path, root, custom, standalone_custom=standalone)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(records))
        os.replace(tmp, cached)
    _check_inputs(records, str(path))
    return records


def _check_inputs(records: list[dict], file: str) -> None:
    """User checkpoints must exist on every run (cheap stat calls; the cache can't know)."""
    for rec in records:
        if rec.get("source") == "file" and not os.path.isfile(rec["pt"]):
            raise UserError(f"pt_file '{rec['pt']}' does not exist", file=file, key=f"{rec['key']}.pt_file",
                            fix="correct the path (relative paths start at the manifest's folder) or place the "
                                "checkpoint there")
        if rec.get("weights_source") == "file" and not os.path.isfile(rec["weights"]):
            raise UserError(f"weights file '{rec['weights']}' does not exist", file=file,
                            key=f"{rec['key']}.weights",
                            fix="correct the path (relative paths start at the manifest's folder), use an open_clip "
                                "pretrained tag such as dfndr2b, or 'untrained'")


_LOCK = None


def hold_build_lock(root: Path = Path(".")) -> None:
    """One building doit per project at a time; a second one waits, saying why. Held until exit."""
    import fcntl
    import sys

    global _LOCK
    path = root / ".pipeline" / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    _LOCK = open(path, "a+")
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
