"""Publishing a Triton folder as numbered versions: models/<folder>/<N>/ appears complete, all at once.

Every folder is built in staging (pytorch_models/staged/<folder>/: config.pbtxt, a sidecar, `1/` with the
model file and its verification record). Its publish task makes the served folder from it:

    models/<folder>/config.pbtxt         the staged config + `version_policy` (manifest `versions.serve`)
    models/<folder>/labels.txt           (or encoder.json)
    models/<folder>/<N>/...              hard links to the staged `1/` files, and version.json: what
                                         version N is made of (its files' SHA-256, its config)
    models/<folder>/.publication.json    what this tool wrote (so a hand edit is told from its own
                                         write), and a pin set by `doit rollback` or a failed deploy

* A new version only when the served bytes change (model files, config, sidecar); an unchanged rebuild
  publishes nothing. Versions beyond `versions.keep` are pruned (never a pinned one).
* The whole new folder is assembled beside it under a hidden name (`models/.<folder>.publish-PID`: Triton
  ignores names it cannot load) and swapped in with one atomic `renameat2(RENAME_EXCHANGE)`: a Triton
  polling the repository sees the old folder or the new one, never a mix, never none.
* A config.pbtxt or sidecar edited by hand is never overwritten: the folder is held with one paragraph
  (the diff, the manifest keys that hold the change, `doit adopt-config`), and the rest of the build goes on.
* A folder with several GPU targets is published only when every target's plan is staged; until then the
  previous version keeps being served and each missing target is named in one line that says where to build it.

The task is up to date while the staged files are those it published (size and mtime: staged files are only
replaced by rename), its parameters are the same and the published folder is exactly what it wrote.
"""
from __future__ import annotations

import ctypes
import difflib
import glob
import hashlib
import inspect
import json
import os
import shutil
import time
from pathlib import Path

from . import paths
from .errors import UserError
from .lock import file_lock
from .runner import prune_empty_dirs

VERSION_RECORD = "version.json"
STATE = ".publication.json"
CONFIG = "config.pbtxt"
STAGED_VERSION = "1"  # the one version folder of a staged folder
BACKUPS = paths.HAND_EDITS  # `doit clean` moves hand-edited files here instead of deleting them


def task(name: str, staged: str, published: str, files: list[str], targets: dict[str, dict], deps: list[str],
         doc: str, versions: dict, manifest: str | None, key: str) -> dict:
    """The doit task. files: paths relative to the staged folder ("config.pbtxt", "labels.txt",
    "1/model.onnx", ...); targets: {plan file: {"cc": compute capability, "where": where to build it}};
    versions: the manifest's {"serve", "keep"}."""
    where = {"manifest": manifest, "key": key}
    return {"name": name, "doc": doc, "task_dep": deps, "targets": [f"{published}/{CONFIG}"],
            "uptodate": [Unchanged(staged, published, files, versions)],
            "actions": [(publish, [staged, published, files, targets, versions, where])],
            "clean": [CleanPublished(published, files)]}


# ---- reading a published folder (also what `doit deploy` and `doit rollback` read)
def versions_of(published: str | Path) -> list[int]:
    """The numbered versions present, ascending (Triton ignores other names and those starting with 0). An
    empty version folder (its files deleted by hand) is none: the next publication drops it."""
    try:
        names = os.listdir(published)
    except OSError:
        return []
    out = []
    for n in names:
        if n.isdigit() and not n.startswith("0"):
            try:
                if os.listdir(f"{published}/{n}"):
                    out.append(int(n))
            except OSError:
                pass
    return sorted(out)


def read_state(published: str | Path) -> dict | None:
    try:
        state = json.loads(Path(published, STATE).read_text())
        return state if isinstance(state, dict) else None
    except (OSError, ValueError):
        return None


def version_record(published: str | Path, version: int) -> dict:
    """What version N is made of: its record, or (a folder published before versions were recorded) its
    files' digests read now."""
    folder = Path(published, str(version))
    try:
        return json.loads((folder / VERSION_RECORD).read_text())
    except (OSError, ValueError):  # the folder's own config and sidecars are this version's
        files = {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
        config = _read(Path(published, CONFIG))
        sidecars = {p.name: _sha256(p) for p in sorted(Path(published).iterdir())
                    if p.is_file() and p.name not in (CONFIG, STATE)}
        rec = {"version": version, "files": files, "config": config.decode() if config else None, "sidecars": sidecars}
        return {**rec, "digest": _digest(rec)}


def served_versions(config_text: str, present: list[int]) -> list[int]:
    """The versions Triton serves from a folder with this config.pbtxt and these version folders."""
    cfg = _parse_config(config_text)
    which = cfg.version_policy.WhichOneof("policy_choice")
    if which == "all":
        return list(present)
    if which == "specific":
        return sorted(v for v in cfg.version_policy.specific.versions if v in present)
    n = cfg.version_policy.latest.num_versions if which == "latest" else 1
    return list(present)[-n:] if present else []


# ---- the publish action
def missing_line(published: str, plan: str, target: dict) -> str:
    """One line per missing (folder, GPU target): which plan, and where to build it."""
    return (f"{published}: no plan yet for compute capability {target['cc']} ({plan}): build it with doit on "
            f"{target['where']} that shares this artifact cache")


def _locked(fn):
    """One writer of published folders at a time: a build's publications, `doit rollback`, a failed deploy."""
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with file_lock(Path(paths.STATE) / "publish.lock"):
            return fn(*args, **kwargs)
    return run


@_locked
def publish(staged: str, published: str, files: list[str], targets: dict[str, dict], versions: dict, where: dict):
    """doit python-action: publish the staged folder as a new version when its bytes changed."""
    from doit.exceptions import TaskFailed

    src, final = Path(staged), Path(published)
    _remove_leftovers(final, src.parent)
    missing = [f for f in files if not (src / f).is_file()]
    if missing:
        plans = [f for f in missing if f in targets]
        serving = versions_of(final)
        still = f" (version {serving[-1]} is still served)" if serving else ""
        for f in plans:
            print("   " + missing_line(published, f, targets[f]) + still)
        if not plans:
            print(f"   {published}: not published{still}: {', '.join(missing)} missing in {staged}")
        return {"published": False, "missing": missing}
    state = read_state(final) or {}
    present = versions_of(final)
    folder_files = [f for f in files if not f.startswith(STAGED_VERSION + "/")]
    version_files = [f[len(STAGED_VERSION) + 1:] for f in files if f.startswith(STAGED_VERSION + "/")]
    staged_config = (src / CONFIG).read_text()
    record = {"files": {f: _sha256(src / STAGED_VERSION / f) for f in version_files}, "config": staged_config,
              "sidecars": {f: _sha256(src / f) for f in folder_files if f != CONFIG}}
    record["digest"] = _digest(record)
    latest = version_record(final, present[-1]) if present else None
    new = latest is None or latest.get("digest") != record["digest"]
    # the newest version's files are links to staged files: a damaged one (written in place) is relinked
    repair = not new and (any(_sha256_or_none(final / str(present[-1]) / f) != h for f, h in record["files"].items()
                              if served(f)) or _listing(final / str(present[-1])) != sorted(version_files + [VERSION_RECORD]))
    pinned = None if new else state.get("pinned")
    number = (present[-1] + 1) if new and present else (1 if new else present[-1])
    keep = _kept(present + ([number] if new else []), versions, pinned)
    wanted = {f: (src / f).read_bytes() for f in folder_files if f != CONFIG}
    wanted[CONFIG] = with_policy(staged_config, pinned or versions["serve"]).encode()

    edited = hand_edits(final, state, folder_files, {f: (src / f).read_bytes() for f in folder_files})
    conflicts = {f: text for f, text in edited.items() if text != wanted[f]}
    if conflicts and not (new or repair) and keep == present and all(
            _read(final / f) == wanted[f] for f in wanted if f not in conflicts):
        # nothing to publish: the edit stays and is served; the next version would have to replace it
        how = (f"`doit adopt-config {final.name}` moves the edit into the manifest" if CONFIG in conflicts
               else "change the manifest's class_names instead")
        print(f"   {published}/{', '.join(conflicts)}: edited by hand, kept ({how}, so that the next version keeps it)")
        return {"published": True, "unchanged": True, "version": number, "hand_edited": sorted(conflicts)}
    if conflicts:
        return TaskFailed(held_paragraph(published, conflicts, wanted, where, new))
    for f in edited:  # edited into exactly what the build now makes: nothing is lost by taking it over
        print(f"   {published}/{f}: the hand edit now is what the manifest makes; taken over")
    if not (new or repair) and keep == present and all(_read(final / f) == wanted[f] for f in wanted) and not edited:
        return {"published": True, "unchanged": True, "version": number}

    def assemble(tmp: Path) -> None:
        for v in keep:
            if v == number and (new or repair):
                for f in version_files:
                    _link(src / STAGED_VERSION / f, tmp / str(v) / f)
                # no timestamp: the same build publishes the same bytes (the folder's mtime says when)
                (tmp / str(v) / VERSION_RECORD).write_text(json.dumps({"version": v, **record}, indent=1,
                                                                      sort_keys=True) + "\n")
            else:
                _link_tree(final / str(v), tmp / str(v))
        for f, data in wanted.items():
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp / f).write_bytes(data)
        write_state(tmp, {**state, "files": {f: hashlib.sha256(d).hexdigest() for f, d in wanted.items()},
                          "pinned": pinned, "serve": versions["serve"], "keep": versions["keep"]})

    swap_in(final, assemble, src.parent)
    gone = sorted(set(present) - set(keep))
    what = (f"version {number} published" if new else f"version {number} repaired from {staged}" if repair
            else "config.pbtxt rewritten (version policy)")
    print(f"   {published}: {what}; versions {', '.join(map(str, keep))} kept"
          + (f", {', '.join(map(str, gone))} pruned" if gone else "")
          + (f"; plans for compute capability {', '.join(t['cc'] for t in targets.values())}" if targets else ""))
    return {"published": True, "version": number, "new": new}


def _kept(present: list[int], versions: dict, pinned: list[int] | None) -> list[int]:
    """The newest `keep` versions, and whatever the policy or a pin names."""
    keep = set(present[-versions["keep"]:]) | set(pinned or [])
    if isinstance(versions["serve"], list):
        keep |= set(versions["serve"]) & set(present)
    return sorted(keep)


def hand_edits(final: Path, state: dict, folder_files: list[str], staged: dict[str, bytes]) -> dict[str, bytes]:
    """Folder files whose bytes are not what this tool last wrote there: {file: the bytes found}. In a folder
    published before writes were recorded (no .publication.json), a file counts as written by the build when
    it is the staged one, the bytes the build wrote there then."""
    out = {}
    written = state.get("files")
    for f in folder_files:
        data = _read(final / f)
        if data is None:
            continue
        ours = hashlib.sha256(data).hexdigest() == written.get(f) if written is not None else data == staged.get(f)
        if not ours:
            out[f] = data
    return out


def held_paragraph(published: str, conflicts: dict[str, bytes], wanted: dict[str, bytes], where: dict,
                   new: bool) -> str:
    name = Path(published).name
    diffs = []
    for f, found in conflicts.items():
        diffs += difflib.unified_diff(wanted[f].decode(errors="replace").splitlines(),
                                      found.decode(errors="replace").splitlines(),
                                      f"{f} (what the build makes)", f"{published}/{f} (edited by hand)", lineterm="")
    keys = []
    if CONFIG in conflicts:
        keys.append(f"run `doit adopt-config {name}` to move the edit into the manifest (`dynamic_batching`, "
                    f"`instance_group` or a `config_overrides:` block of ModelConfig fields), then doit again")
    if set(conflicts) - {CONFIG}:
        keys.append("labels.txt comes from the checkpoint's class names (manifest `class_names`), encoder.json from "
                    "the encoder: change them there")
    keys.append(f"or move the edited file{'s' if len(conflicts) > 1 else ''} aside to let the build rewrite "
                f"{'them' if len(conflicts) > 1 else 'it'}")
    waits = "a new version waits" if new else "the folder is unchanged"
    return UserError(
        f"{published}/{', '.join(conflicts)} was edited by hand since the build wrote it; the edit is kept and "
        f"{name} is held ({waits}; the rest of the build goes on)", file=where["manifest"], key=where["key"],
        fix="; ".join(keys)).paragraph + "\n" + "\n".join("      " + line for line in diffs)


def with_policy(config_text: str, serve) -> str:
    """The config with Triton's `version_policy`: "latest N", "all", or a list of version numbers."""
    from google.protobuf import text_format

    cfg = _parse_config(config_text)
    cfg.ClearField("version_policy")
    if serve == "all":
        cfg.version_policy.all.SetInParent()
    elif isinstance(serve, list):
        cfg.version_policy.specific.versions.extend(serve)
    else:
        cfg.version_policy.latest.num_versions = int(str(serve).split()[1])
    return text_format.MessageToString(cfg)


@_locked
def pin(published: str | Path, pinned: list[int] | None, work: str | Path) -> None:
    """Serve exactly these versions until a new one is published (`doit rollback`, a failed deploy); None
    lifts the pin. One atomic swap, like a publication (assembled in `work`, the staging folder's parent); the
    pin is this tool's own write, not a hand edit."""
    final = Path(published)
    state = read_state(final) or {}
    config = _read(final / CONFIG)
    if config is None:
        raise FileNotFoundError(f"{final / CONFIG}")
    text = with_policy(config.decode(), pinned or state.get("serve", "latest 1")).encode()

    def assemble(tmp: Path) -> None:
        _link_tree(final, tmp, skip={CONFIG, STATE})
        (tmp / CONFIG).write_bytes(text)
        files = {**state.get("files", {}), CONFIG: hashlib.sha256(text).hexdigest()}
        write_state(tmp, {**state, "files": files, "pinned": pinned})

    swap_in(final, assemble, Path(work))


def write_state(folder: Path, state: dict) -> None:
    (folder / STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")


# ---- the swap
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_in(final: Path, assemble, work: Path) -> None:
    """Assemble the new folder in `work` (outside the repository: Triton polls every folder of its repository,
    hidden ones too), then exchange the two in one rename. `work` on another filesystem than models/: assembled
    inside the published folder instead (a non-numeric name, which Triton ignores there) and moved into place
    piece by piece — each version folder and file by one rename, not the whole folder at once."""
    final.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if final.exists() and not _same_filesystem(work, final.parent):
        return _swap_in_place(final, assemble)
    tmp = work / f".{final.name}.publish-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        assemble(tmp)
        if not final.exists():
            try:
                os.rename(tmp, final)
            except OSError:  # another filesystem: the first version goes in place
                final.mkdir()
                return _swap_in_place(final, assemble)
        elif not _exchange(tmp, final):  # no renameat2 (not Linux, an old kernel, a filesystem without it)
            old = work / f".{final.name}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)  # absent for an instant, never partial
            tmp = old
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in_place(final: Path, assemble) -> None:
    tmp = final / f".publish-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        assemble(tmp)
        new = {p.name for p in tmp.iterdir()}
        for p in sorted(tmp.iterdir(), key=lambda p: (not p.is_dir(), p.name)):  # versions first, then the config
            if p.is_dir():
                if not (final / p.name).exists():
                    os.rename(p, final / p.name)
            else:
                os.replace(p, final / p.name)
        for p in final.iterdir():
            if p.name not in new and p != tmp and (p.is_dir() and p.name.isdigit() or p.name in (CONFIG, STATE)):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_filesystem(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _remove_leftovers(final: Path, work: Path) -> None:
    """The hidden trees of killed earlier publications."""
    for folder in (work, final.parent):
        for leftover in glob.glob(glob.escape(str(folder / f".{final.name}.")) + "*-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in glob.glob(glob.escape(str(final / ".publish-")) + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # artifacts are replaced by rename, never modified: links are safe
    except OSError:
        shutil.copy2(src, dst)


def _link_tree(src: Path, dst: Path, skip: set[str] = frozenset()) -> None:
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if str(rel) in skip or not p.is_file():
            continue
        _link(p, dst / rel)


# ---- helpers
def _parse_config(text: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def _sha256(path: Path) -> str:
    from .hashing import sha256

    return sha256(path)


def _listing(folder: Path) -> list[str]:
    """Every file of a version folder (a stray one makes it another version than the one published)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _sha256_or_none(path: Path) -> str | None:
    return _sha256(path) if path.is_file() else None


def served(file: str) -> bool:
    """What Triton or a client reads: not the verification records beside the model files (they name the code
    that made the bytes: a code change that makes the same bytes is no new version)."""
    return not file.endswith(".verification.json")


def _digest(record: dict) -> str:
    files = {f: h for f, h in record["files"].items() if served(f)}
    return hashlib.sha256(json.dumps({"files": files, "config": record["config"], "sidecars": record["sidecars"]},
                                     sort_keys=True).encode()).hexdigest()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


class Unchanged:
    """doit `uptodate`: the staged files are those published last time, the parameters are the same, and the
    published folder is what publication left (its versions, its folder files, its newest version's files).

    Files are compared as doit compares file dependencies: the same size and mtime is the same file, else
    their SHA-256 decides — a restored checkout with new mtimes publishes nothing, a touched file is no edit,
    an edit in place of the same size is one."""

    def __init__(self, staged: str, published: str, files: list[str], versions: dict):
        self.staged, self.published, self.files, self.versions = staged, published, files, versions
        self.paths = [f"{staged}/{f}" for f in files]
        self.changed: list[str] = []

    def _published_paths(self) -> list[str]:
        out = [f"{self.published}/{STATE}"]
        out += [f"{self.published}/{f}" for f in self.files if not f.startswith(STAGED_VERSION + "/")]
        present = versions_of(self.published)
        if present:
            out += [f"{self.published}/{present[-1]}/{f[len(STAGED_VERSION) + 1:]}" for f in self.files
                    if f.startswith(STAGED_VERSION + "/")]
        return out

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {"_staged": _content_stamp(self.paths),
                                          "_published": _content_stamp(self._published_paths()),
                                          "_present": self._present(), "_versions": self.versions})

    def _present(self) -> list:
        """The versions, and the files of the newest one."""
        present = versions_of(self.published)
        return [present, _listing(Path(self.published, str(present[-1]))) if present else []]

    __signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for n in ("task", "values")])

    def __call__(self, task, values) -> bool:
        old = values.get("_staged")
        if old is None:
            self.changed = ["(never published)"]
        elif _differ(old, self.paths):
            self.changed = [f"staged {p} changed" for p in _differ(old, self.paths)]
        elif values.get("_versions") != self.versions:
            self.changed = [f"versions: {values.get('_versions')} -> {self.versions}"]
        elif values.get("_present") != self._present() or _differ(values.get("_published") or {},
                                                                              self._published_paths()):
            self.changed = [f"{self.published} changed since it was published"]
        else:
            self.changed = []
        return not self.changed

    def watched(self) -> list[str]:
        """Paths this check reads (engine/noop.py): the staged files, the published folder and its newest version
        folder (a version or a file added or removed changes their mtime), their files."""
        present = versions_of(self.published)
        newest = [f"{self.published}/{present[-1]}"] if present else []
        return list(self.paths) + [self.published] + newest + self._published_paths()

    def __repr__(self) -> str:
        return "changed: " + "; ".join(self.changed) if self.changed else "staged files and published folder unchanged"


def _content_stamp(paths: list[str]) -> dict[str, list | None]:
    out = {}
    for p in paths:
        try:
            st = os.stat(p)
            out[p] = [st.st_size, st.st_mtime_ns, _sha256(Path(p))]
        except OSError:
            out[p] = None
    return out


def _differ(saved: dict, paths: list[str]) -> list[str]:
    """The paths whose content is not the saved one (stat first, SHA-256 only when the stat moved)."""
    out = []
    for p in paths:
        old = saved.get(p)
        try:
            st = os.stat(p)
        except OSError:
            if old is not None:
                out.append(p)
            continue
        if old is None or (old[:2] != [st.st_size, st.st_mtime_ns] and (old[0] != st.st_size
                                                                         or old[2] != _sha256(Path(p)))):
            out.append(p)
    if set(saved) - set(paths):
        out.append("(a file is no longer published)")
    return out


class CleanPublished:
    """`doit clean`: the published folder goes, every version; a file edited by hand is moved to
    pytorch_models/hand-edits/ first, never deleted."""

    def __init__(self, published: str, files: list[str]):
        self.published, self.files = published, files

    def __str__(self) -> str:
        return f" remove {self.published}/ (every version; hand edits kept in {BACKUPS}/)"

    def __call__(self) -> None:
        final = Path(self.published)
        if not final.is_dir():
            return
        folder_files = [f for f in self.files if not f.startswith(STAGED_VERSION + "/")]
        for f, data in hand_edits(final, read_state(final) or {}, folder_files, {}).items():
            backup = Path(BACKUPS, final.name, f"{f}.{time.strftime('%Y%m%dT%H%M%S')}")
            backup.parent.mkdir(parents=True, exist_ok=True)
            backup.write_bytes(data)
            print(f"keeping {final}/{f} (edited by hand) as {backup}")
        print(f"removing {final}/ (versions {', '.join(map(str, versions_of(final))) or 'none'})")
        shutil.rmtree(final)
        prune_empty_dirs(final.parent)
