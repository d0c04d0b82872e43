"""The one generic step runner: what every step needs, done once for all of them.

When doit runs a step's task, `run_step`:
* keeps outputs already recorded with the step's recipe (a restored checkout, a run killed after its
  renames), else restores a verified entry from the artifact cache (cache.py), else builds;
* has the builder write to temporary files beside the targets (`.STEM.tmp-PID.SUFFIX`), and renames
  them into place only after the builder has verified its result, record first and primary artifact
  last — a killed build never leaves a finished-looking target;
* removes the step's previous (now stale) targets when a build fails: nothing inconsistent is served;
* writes a JSON record beside the artifact: the recipe (input/output SHA-256, parameters, tool versions,
  code hashes) and what the builder verified.

Builders are named "module:function" and imported only when they run.
"""
from __future__ import annotations

import errno
import glob
import importlib
import json
import os
import shutil
import time
from pathlib import Path

from . import threads, timings
from .cache import ArtifactCache, recipe
from .context import StepContext
from .errors import UserError
from .hashing import sha256


def tmp_for(final: Path) -> Path:
    """`.model.tmp-PID.onnx`: hidden, unmistakably unfinished, same suffix (tools check suffixes)."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")


def _remove_leftovers(final: Path) -> None:
    """Temporary files of killed earlier runs."""
    for old in glob.glob(glob.escape(str(final.with_name(f".{final.stem}.tmp-"))) + f"*{final.suffix}"):
        Path(old).unlink(missing_ok=True)


def prune_empty_dirs(folder: Path) -> None:
    """A failed first build or a clean leaves no empty Triton folder behind (Triton would try to load it)."""
    while len(folder.parts) > 1:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


class RemoveFiles:
    """`doit clean` action: the step's derived files only (downloads and user checkpoints are never passed
    here), then the folders they leave empty. `doit clean -n` prints the files (doit shows str(action))."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __str__(self) -> str:
        return " remove " + ", ".join(self.paths)  # doit drops the first character (meant for "<function")

    def __call__(self) -> None:
        for p in map(Path, self.paths):
            if p.is_file() or p.is_symlink():
                print(f"removing {p}")
                p.unlink()
            prune_empty_dirs(p.parent)


def _function(name: str):
    module, func = name.split(":")
    return getattr(importlib.import_module(module), func)


def call_builder(builder: str, ctx: StepContext):
    return _function(builder)(ctx)


def context_for(spec: dict, tmp: dict[Path, Path]) -> StepContext:
    return StepContext(task=spec["task"], inputs={k: Path(p) for k, p in spec["inputs"].items()},
                       outputs={k: Path(p) for k, p in spec["outputs"].items()}, tmp=tmp, params=spec["params"],
                       key=spec["key"], uses=spec.get("uses"))


def _call_isolated(spec: dict, ctx: StepContext):
    """The builder in `python -m pipeline.engine.isolated`: same spec, result (or user error) back as JSON."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="step-") as d:
        job, result = Path(d) / "job.json", Path(d) / "result.json"
        job.write_text(json.dumps({"spec": spec, "tmp": [[str(f), str(t)] for f, t in ctx.tmp.items()],
                                   "result": str(result)}))
        proc = subprocess.run([sys.executable, "-m", "pipeline.engine.isolated", str(job)])
        if not result.exists():
            raise RuntimeError(f"{spec['task']}: the builder process exited with {proc.returncode} and no result")
        out = json.loads(result.read_text())
    if "user_error" in out:
        raise UserError(**out["user_error"])
    ctx.kept.update(Path(p) for p in out.get("kept", []))
    return out["verification"]


def step_recipe(spec: dict) -> str:
    return recipe(spec, {k: sha256(p) for k, p in spec["inputs"].items()})


def run_step(spec: dict):
    """doit python-action: reuse (recorded or cached) or build into temporary files, verify, record,
    rename, cache. User errors -> TaskFailed (one paragraph, no traceback)."""
    from doit.exceptions import TaskFailed

    outputs = [Path(p) for p in spec["outputs"].values()]
    record = Path(spec["record"]) if spec["record"] else None
    finals = outputs + ([record] if record else [])
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(final)
    try:
        key = step_recipe(spec)
    except OSError as e:  # an input the user made unreadable (permissions, a device error)
        return TaskFailed(UserError(f"{spec['task']} cannot read its input '{e.filename}' ({e.strerror})",
                                    key=spec["key"], file=spec["manifest"],
                                    fix="make the file readable by this user (e.g. chmod a+r) or correct its path in "
                                        "the manifest").paragraph)
    if _recorded(outputs, record, key):
        print(f"   {spec['task']}: already built with this recipe ({key[:12]}), kept")
        return {"build_seconds": None, "kept": True}
    cache = ArtifactCache.configured()
    if cache and cache.restore(key, outputs, record, tmp_for):
        print(f"   {spec['task']}: restored from the artifact cache ({key[:12]})")
        return {"build_seconds": None, "restored": True}
    if spec.get("buildable"):
        why = _function(spec["buildable"])(spec["params"])
        if why:  # another host's share: nothing stale stays, the task is run again next time
            for final in finals:
                final.unlink(missing_ok=True)
                prune_empty_dirs(final.parent)
            print(f"   {spec['task']}: not built here: {why}")
            return {"build_seconds": None, "missing": why}

    ctx = context_for(spec, {f: tmp_for(f) for f in outputs})
    try:
        if spec.get("missing"):  # a tool the step needs is absent here: its stale targets go, as on any failure
            raise _lacking(spec)
        threads.apply_to_torch()
        started = time.perf_counter()
        with _progress(spec["task"]):
            verification = _call_isolated(spec, ctx) if spec["isolate"] else call_builder(spec["builder"], ctx)
        seconds = time.perf_counter() - started
        for final in outputs:
            if final in ctx.kept:
                continue
            if not ctx.tmp[final].is_file() or ctx.tmp[final].stat().st_size == 0:
                raise RuntimeError(f"{spec['task']}: the builder wrote no {final}")
        if record:
            made = {f: f if f in ctx.kept else ctx.tmp[f] for f in outputs}
            rec = {
                "task": spec["task"],
                "recipe": key,
                "untrained": spec["untrained"],
                "inputs": {p: sha256(p) for p in spec["inputs"].values()},
                "outputs": {str(f): {"sha256": sha256(m), "bytes": m.stat().st_size} for f, m in made.items()},
                "params": spec["params"],
                "tools": spec["tools"],
                "code": spec["code"],
                "verification": verification or {},
            }
            tmp_rec = tmp_for(record)
            tmp_rec.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
            _publish(tmp_rec, record)
        for final in reversed(outputs):  # primary artifact last
            if final not in ctx.kept:
                _publish(ctx.tmp[final], final)
    except BaseException as exc:
        full = _disk_full(exc, list(ctx.tmp.values()) + ([tmp_for(record)] if record else []))
        for final in finals:
            _remove_leftovers(final)
            if final not in ctx.kept:
                Path(final).unlink(missing_ok=True)  # stale now: complete or absent
            prune_empty_dirs(final.parent)
        if isinstance(exc, UserError):
            exc.file = exc.file or spec["manifest"]
            return TaskFailed(exc.paragraph)
        if full:
            return TaskFailed(UserError(
                f"{spec['task']} could not write its files: {full}; nothing half-written was kept", key=spec["key"],
                file=spec["manifest"], fix=f"free space on the disk holding '{outputs[0].parent if outputs else '.'}' "
                                           "(or raise the file-size limit, ulimit -f), then run doit again").paragraph)
        raise
    timings.record(spec["task"], seconds)
    if cache:
        cache.store(key, outputs, record)
    # The build time goes into doit's state for this task (`doit status` shows it), not into the record:
    # records are inputs of later steps and part of cache keys, and must be the same bytes on every host.
    return {"build_seconds": round(seconds, 2)}


def _lacking(spec: dict) -> UserError:
    tools = spec["missing"]
    return UserError(f"{spec['task']} needs {' and '.join(t['what'] for t in tools)}, which "
                     f"{'is' if len(tools) == 1 else 'are'} not installed here", key=spec["key"],
                     fix="; ".join(t["fix"] for t in tools))


_FULL = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
         errno.EFBIG: "a file exceeds the size limit for this process (ulimit -f)"}


def _disk_full(exc: BaseException, written: list[Path]) -> str | None:
    """Out of disk space, quota or file-size limit? An OSError says so; C++ writers (torch's zip writer,
    protobuf) often only say "iostream error", so the disk and the limit are looked at too."""
    import resource

    chain, seen = exc, set()
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError) and chain.errno in _FULL:
            return _FULL[chain.errno]
        chain = chain.__cause__ or chain.__context__
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    sizes = [p.stat().st_size for p in written if p.is_file()]
    if limit != resource.RLIM_INFINITY and any(n >= limit for n in sizes):
        return _FULL[errno.EFBIG]
    folders = {p.parent for p in written if p.parent.is_dir()}
    try:
        if any(shutil.disk_usage(d).free < (1 << 20) for d in folders):
            return _FULL[errno.ENOSPC]
    except OSError:
        pass
    return None


def _publish(tmp: Path, final: Path) -> None:
    """Rename into place — unless the finished file already has exactly these bytes: then it stays, with
    its mtime, so doit's checks downstream need not hash it again (make's "restat", ninja's restat)."""
    if final.is_file() and final.stat().st_size == tmp.stat().st_size and sha256(final) == sha256(tmp):
        tmp.unlink()
    else:
        os.replace(tmp, final)


def _progress(task: str):
    """A spinner with elapsed time while a step builds, on a terminal (logs stay clean). Downloads and
    TensorRT builds show their own bars (Ultralytics/open_clip downloads, IProgressMonitor)."""
    import contextlib
    import sys

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    progress.add_task(f"building {task}", total=None)
    return progress


def _recorded(outputs: list[Path], record: Path | None, key: str) -> bool:
    """Outputs present, recorded with this recipe, and still the bytes the record names."""
    if not record or not record.is_file():
        return False
    try:
        rec = json.loads(record.read_text())
        made = rec["outputs"] if rec.get("recipe") == key else None
        return isinstance(made, dict) and all(p.is_file() and made.get(str(p), {}).get("sha256") == sha256(p)
                                              for p in outputs)
    except (ValueError, KeyError, TypeError, AttributeError, OSError):  # a damaged record: build again
        return False
