"""Recipe hashes and the content-addressed artifact cache.

A step's **recipe** is the SHA-256 of everything that decides its outputs: the builder, the parameters
it declares, the versions of the tools its code imports (plus TensorRT version and GPU for plans), the
executable code of its import closure (engine/codedeps.py), and the content of its named inputs — not
their paths: a clone elsewhere has the same recipes. It is written into the step's record. A builder
can read nothing else (engine/context.py), so equal recipes mean equal artifacts.

Before building, the runner asks, in order:
1. are the outputs already here, recorded with this recipe and with the recorded SHA-256? (a restored
   checkout, or a run killed after its renames: nothing to do);
2. does the cache hold this recipe? restore the outputs, each checked against the entry's SHA-256 —
   an entry that does not match is reported, deleted and rebuilt, never served;
3. otherwise build, check, record, and store the outputs in the cache.
A local cache shares files with the repository by hard links (artifacts are never modified in
place: they are replaced by rename); the SHA-256 check on restore still applies. The cache is a local
folder by default (`.pipeline/artifact-cache`) or any fsspec URL (`s3://`,
`gs://`, `file://`) in `PIPELINE_CACHE` / `doit cache=URL`; `cache=off` disables it. A cache that cannot
be read or written (full disk, no permission, unreachable) only costs a warning: the build goes on.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

from . import paths
from .hashing import sha256

DEFAULT = paths.ARTIFACT_CACHE


def warn(message: str) -> None:
    sys.stderr.write(f"warning: artifact cache: {message}\n")


def recipe(spec: dict, input_hashes: dict[str, str]) -> str:
    """The recipe of a runner spec (step.py), given the SHA-256 of each named input."""
    doc = {"builder": spec["builder"], "params": spec["params"], "tools": spec["tools"],
           "code": spec["code"], "inputs": input_hashes,
           "outputs": {name: Path(p).name for name, p in spec["outputs"].items()}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class _BadEntry(Exception):
    """The entry itself is wrong (not this reader's failure)."""


class ArtifactCache:
    """Entries: <root>/<recipe[:2]>/<recipe>/index.json, beside the entry's files, each named by its SHA-256.

    Many writers (CI jobs, hosts, `doit -n N` workers) may store the same entry at once, and readers may
    look at it meanwhile. The protocol needs nothing from the store but atomic single-object writes:
    * blobs first, each under its content's name: two writers of one blob write the same bytes;
    * index.json last: an entry exists only once every file it names is complete. An upload killed
      half-way leaves blobs without an index, which no reader ever serves;
    * each object appears whole: on a local (or mounted) folder it is written to a unique temporary name
      and renamed; an object store (S3, GCS) makes a PUT, multipart or not, visible only once complete.
    Readers still check every file against the SHA-256 the index names before using it."""

    def __init__(self, url: str):
        import fsspec

        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url)

    @classmethod
    def configured(cls) -> "ArtifactCache | None":
        url = os.environ.get("PIPELINE_CACHE", DEFAULT)
        if url.lower() in ("off", "none", "0", ""):
            return None
        try:
            return cls(url)
        except Exception as e:  # unknown protocol, missing s3fs/gcsfs, ...
            warn(f"{url} is unusable ({type(e).__name__}: {e}); building without it")
            return None

    @property
    def local(self) -> bool:
        return "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def _get(self, src: str, dst: Path) -> None:
        """Local cache: a hard link (artifacts are immutable, replaced by rename); else fsspec's copy."""
        if self.local:
            try:
                os.link(src, dst)
                return
            except OSError:
                pass
        self.fs.get_file(src, str(dst))

    def _put(self, src: Path | bytes, dst: str) -> None:
        """One object, appearing whole (see the class docstring)."""
        if not self.local:
            if isinstance(src, bytes):
                self.fs.pipe_file(dst, src)
            else:
                self.fs.put_file(str(src), dst)
            return
        tmp = f"{os.path.dirname(dst)}/.{os.path.basename(dst)}.tmp-{uuid.uuid4().hex}"
        try:
            if isinstance(src, bytes):
                with open(tmp, "wb") as f:
                    f.write(src)
            else:
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)

    def _dir(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key[:2]}/{key}"

    def restore(self, key: str, outputs: list[Path], record: Path | None, tmp_for) -> bool:
        """Copy a verified entry into place (temp file + rename). False when absent or unusable.

        Only a bad entry is withdrawn — a file that does not match the SHA-256 its index names (that file
        and the index go: a writer skips files already present by name), or an index that is not one (the
        index goes). A failure of this reader (its disk, its permissions, the network) is a miss: another
        host's work, possibly a plan only one GPU model can rebuild, is never deleted for it."""
        d = self._dir(key)
        try:
            if not self.fs.exists(f"{d}/index.json"):
                return False
            raw = self.fs.cat_file(f"{d}/index.json")
        except Exception as e:
            warn(f"cannot read {self.url} ({type(e).__name__}: {e}); building")
            return False
        staged = []
        try:
            try:
                index = json.loads(raw)
                files = list(zip(outputs, index["outputs"], strict=True)) + \
                    ([(record, index["record"])] if record else [])
                metas = [(final, meta["blob"], meta["sha256"]) for final, meta in files]
            except (ValueError, KeyError, TypeError) as e:
                raise _BadEntry(f"its index is damaged ({type(e).__name__}: {e})") from None
            for final, blob, digest in metas:
                tmp = tmp_for(final)
                self._get(f"{d}/{blob}", tmp)
                staged.append((tmp, final))
                if sha256(tmp) != digest:
                    raise _BadEntry(f"{blob[:12]} of entry {key[:12]} does not match its recorded SHA-256", blob)
        except Exception as e:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            if not isinstance(e, _BadEntry):
                warn(f"cannot restore entry {key[:12]} from {self.url} ({type(e).__name__}: {e}); building")
                return False
            warn(f"entry {key[:12]} for {outputs[0] if outputs else record} is unusable ({e}); it is withdrawn "
                 "and the artifact rebuilt")
            for name in ["index.json", *e.args[1:]]:  # the index, and the damaged file
                try:
                    self.fs.rm(f"{d}/{name}")
                except Exception:
                    pass
            return False
        for tmp, final in reversed(staged):  # record first, primary artifact last (see runner)
            os.replace(tmp, final)
        return True

    def store(self, key: str, outputs: list[Path], record: Path | None) -> None:
        d = self._dir(key)
        try:
            if self.fs.exists(f"{d}/index.json"):  # another writer was first: same recipe, same artifact
                return
            self.fs.makedirs(d, exist_ok=True)
            index = {"outputs": [], "record": None}
            for path in outputs + ([record] if record else []):
                digest = sha256(path)
                if not self.fs.exists(f"{d}/{digest}"):
                    self._put(path, f"{d}/{digest}")
                meta = {"blob": digest, "name": path.name, "sha256": digest}
                if path == record:
                    index["record"] = meta
                else:
                    index["outputs"].append(meta)
            self._put(json.dumps(index, sort_keys=True).encode(), f"{d}/index.json")  # last: the entry exists
        except Exception as e:
            warn(f"could not store into {self.url} ({type(e).__name__}: {e}); the build goes on without it")
