"""Load the manifest for dodo.py fast: a validated manifest is cached as JSON keyed on its content.

A no-op `doit` must cost little more than doit's own startup, and importing pydantic + yaml alone costs
about as much as doit itself. So the schema (`records.py` and what it imports) runs only when the manifest text, the
`custom=` value or the schema's code (its import closure, engine/codedeps.py) changed; otherwise the resolved records come
from `.pipeline/manifests/<key>.json`. Invalid manifests are never cached.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ...engine import codedeps
from ...engine.errors import UserError
from .. import layout

CACHE_DIR = Path(layout.MANIFEST_CACHE)


def manifest_key(manifest: str, custom: str | None, root: Path, explicit_manifest: bool = True) -> tuple[str, bytes]:
    """(key, text): the key names the resolution of this manifest text, path, custom= value, schema code and
    project root; a resolution never changes while its key does not."""
    path = Path(manifest)
    try:
        text = path.read_bytes()
    except OSError:
        text = b""  # let the schema module produce the error paragraph
    standalone = bool(custom) and not explicit_manifest
    key = hashlib.sha256(b"\0".join([
        text, str(path.absolute()).encode(), (custom or "").encode(), b"standalone" if standalone else b"",
        json.dumps(codedeps.index().code(f"{__package__}.records")).encode(), str(root.absolute()).encode(),
    ])).hexdigest()[:24]
    return key, text


def load_models(manifest: str, custom: str | None, root: Path, explicit_manifest: bool = True) -> list[dict]:
    path = Path(manifest)
    standalone = bool(custom) and not explicit_manifest
    key, text = manifest_key(manifest, custom, root, explicit_manifest)
    cached = root / CACHE_DIR / f"{key}.json"
    records = _cached(cached) if text else None
    if records is None:
        from .records import resolve  # pydantic + yaml: only when the manifest changed
        records = resolve(path, root, custom, standalone_custom=standalone)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(records))
            os.replace(tmp, cached)
        except OSError:  # read-only or full disk: validated again next time
            tmp.unlink(missing_ok=True)
    _check_inputs(records, str(path))
    return records


def _cached(path: Path) -> list[dict] | None:
    """A cached resolution, or None when absent or damaged (then the manifest is validated again)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(records, list) and all(isinstance(r, dict) and "key" in r and "settings" in r for r in records)
    return records if ok and all(_same_checkpoint(r) for r in records) else None


def _same_checkpoint(record: dict) -> bool:
    """A family read from a checkpoint file holds while the file is unchanged (records.py)."""
    stamp = record.get("checkpoint_stamp")
    if stamp is None:
        return True
    try:
        st = os.stat(record["pt"])
    except OSError:
        return False
    return [st.st_mtime_ns, st.st_size] == stamp


def _missing(path: str) -> str | None:
    """Why a user file can't be used, from stat calls: None when it is a regular file."""
    if os.path.isfile(path):
        return None
    if os.path.isdir(path):
        return "is a directory, not a file"
    if os.path.islink(path):
        return "is a broken symlink or a symlink loop"
    return "does not exist" if not os.path.lexists(path) else "is not a regular file"


def _check_inputs(records: list[dict], file: str) -> None:
    """User checkpoints must exist on every run (cheap stat calls; the cache can't know)."""
    for rec in records:
        if rec.get("source") == "file" and (why := _missing(rec["pt"])):
            raise UserError(f"pt_file '{rec['pt']}' {why}", file=file, key=f"{rec['key']}.pt_file",
                            fix="correct the path (relative paths start at the manifest's folder) or place the "
                                "checkpoint there")
        if rec.get("weights_source") == "file" and (why := _missing(rec["weights"])):
            raise UserError(f"weights file '{rec['weights']}' {why}", file=file,
                            key=f"{rec['key']}.weights",
                            fix="correct the path (relative paths start at the manifest's folder), use an open_clip "
                                "pretrained tag such as dfndr2b, or 'untrained'")
