"""Publishing a staged Triton folder: models/<folder>/ appears only complete, all at once.

A TensorRT folder with several GPU targets (manifest `gpu_targets`) is built in pytorch_models/staged/:
its config.pbtxt lists every target's plan in `cc_model_filenames`, and each plan comes from the one
host whose GPU has that compute capability (or from the shared artifact cache). Triton refuses a folder
whose config names a plan that is not there, and by default stops the whole server for it, so the
folder is copied into models/ (hard links) only once every file is in staging; until then models/
holds no trace of it and each missing target is named in one line that says where to build it.

The publish task is up to date while the staged files are the ones it published (size and mtime: a
staged file is only ever replaced by rename, never rewritten in place) and models/<folder> still is
exactly them (the same inodes, nothing else).
"""
from __future__ import annotations

import glob
import inspect
import os
import shutil
from pathlib import Path

from .runner import RemoveFiles, prune_empty_dirs


def task(name: str, staged: str, published: str, files: list[str], targets: dict[str, dict], deps: list[str],
         doc: str) -> dict:
    """The doit task. files: paths relative to the folder; targets: {plan file: {"cc": compute capability,
    "where": where to build it (a phrase)}}."""
    finals = [f"{published}/{f}" for f in files]
    return {"name": name, "doc": doc, "task_dep": deps, "targets": finals,
            "uptodate": [StagedUnchanged(staged, published, files)],
            "actions": [(publish, [staged, published, files, targets])],
            "clean": [RemoveFiles(finals)]}


def _stamp(paths: list[str]) -> dict[str, list[int]]:
    out = {}
    for p in paths:
        try:
            st = os.stat(p)
            out[p] = [st.st_size, st.st_mtime_ns]
        except OSError:
            out[p] = [-1, -1]
    return out


class StagedUnchanged:
    """doit `uptodate`: the staged files are those published last time, and the published folder is them."""

    def __init__(self, staged: str, published: str, files: list[str]):
        self.staged, self.published, self.files = staged, published, files
        self.paths = [f"{staged}/{f}" for f in files]
        self.changed: list[str] = []

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {"_staged": _stamp(self.paths)})

    __signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for n in ("task", "values")])

    def __call__(self, task, values) -> bool:
        old = values.get("_staged")
        if old is None:
            self.changed = ["(never published)"]
        elif old != _stamp(self.paths):
            self.changed = [f"staged {p} changed" for p, v in _stamp(self.paths).items() if old.get(p) != v]
        elif not _same(Path(self.staged), Path(self.published), self.files):
            self.changed = [f"{self.published} is not the staged folder"]
        else:
            self.changed = []
        return not self.changed

    def watched(self) -> list[str]:
        """Paths this check reads (engine/noop.py): the staged files, and the published folder's every folder
        (a file added or removed changes its folder's mtime) and file (inode: the same hard links)."""
        out = list(self.paths) + [self.published]
        for folder, dirs, files in os.walk(self.published):
            out += [os.path.join(folder, d) for d in dirs] + [os.path.join(folder, f) for f in files]
        return out

    def __repr__(self) -> str:
        return "changed: " + "; ".join(self.changed) if self.changed else "staged files and published folder unchanged"


def missing_line(published: str, plan: str, target: dict) -> str:
    """One line per missing (folder, GPU target): which plan, and where to build it."""
    return (f"{published}: no plan yet for compute capability {target['cc']} ({plan}): build it with doit on "
            f"{target['where']} that shares this artifact cache")


def publish(staged: str, published: str, files: list[str], targets: dict[str, dict]) -> dict:
    """doit python-action: hard-link the complete staged folder into place, or withdraw it and say what
    is missing (not a failure: other hosts build the other targets; `doit assemble` insists)."""
    src, final = Path(staged), Path(published)
    for folder in (src.parent, final.parent):  # killed earlier runs
        for leftover in glob.glob(glob.escape(str(folder / f".{final.name}.")) + "*-*"):
            shutil.rmtree(leftover, ignore_errors=True)
    missing = [f for f in files if not (src / f).is_file()]
    if missing:
        if final.exists():
            print(f"   {published}: withdrawn until every GPU target's plan is built again")
            shutil.rmtree(final)
            prune_empty_dirs(final.parent)
        plans = [f for f in missing if f in targets]
        for f in plans:
            print("   " + missing_line(published, f, targets[f]))
        if not plans:
            print(f"   {published}: not published: {', '.join(missing)} missing in {staged}")
        return {"published": False, "missing": missing}
    if final.is_dir() and _same(src, final, files):
        return {"published": True, "unchanged": True}
    # Assembled beside the staged folder (Triton never sees it), then moved into models/ by rename: the
    # folder is absent for an instant at most, never partial. A different filesystem: assembled in models/
    # under a hidden name instead.
    work = src.parent if _same_filesystem(src.parent, final.parent) else final.parent
    tmp, old = work / f".{final.name}.publish-{os.getpid()}", work / f".{final.name}.old-{os.getpid()}"
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src / f, tmp / f)  # artifacts are replaced by rename, never modified: links are safe
        except OSError:
            shutil.copy2(src / f, tmp / f)
    if final.exists():
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(tmp, final)
    print(f"   {published}: published with plans for compute capability "
          f"{', '.join(t['cc'] for t in targets.values())}")
    return {"published": True}


def _same(src: Path, final: Path, files: list[str]) -> bool:
    """The published folder already is exactly the staged files (same inodes, nothing else)."""
    try:
        if not all(os.path.samefile(src / f, final / f) for f in files):
            return False
    except OSError:
        return False
    present = {str(p.relative_to(final)) for p in final.rglob("*") if p.is_file()}
    return present == set(files)


def _same_filesystem(a: Path, b: Path) -> bool:
    b.mkdir(parents=True, exist_ok=True)
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False
