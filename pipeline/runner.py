"""The one generic step runner: atomic writes, the verification record and the staleness parameters.

Every artifact kind is a `Step` declaration (inputs, outputs, parameters, builder); this module turns it
into a doit task and, when doit runs it, does what every step needs exactly once:

* builders write to temporary files beside the targets (`.STEM.tmp-PID.SUFFIX`); only after the builder has
  verified its result are they renamed into place, record first and primary artifact last — a killed
  build never leaves a finished-looking target;
* a failed build removes the step's previous (now stale) targets, so nothing inconsistent is served;
* a JSON record beside the artifact keeps the recipe (input/output SHA-256, parameters, tool versions,
  code hashes) and what the builder verified;
* `params_unchanged` makes a task stale when a manifest field or tool version it uses changes, and tells
  `doit info` which one.

Nothing heavy is imported here: builders are named as "module:function" and imported when they run.
"""
from __future__ import annotations

import glob
import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any, Callable

from .errors import UserError
from .versions import versions

Model = dict  # a resolved manifest record (see manifest.resolve)


class Step:
    """Declaration of one artifact kind. Callables take the model record.

    basename   doit task basename, e.g. "export_onnx"
    doc        shown by `doit list` (formatted with the model record)
    builder    "module:function" called with a StepContext
    outputs    model -> targets; the first is the primary artifact
    inputs     model -> file dependencies (their content makes it stale)
    params     model -> manifest fields that make it stale
    tools      distributions whose versions make it stale
    code       source files whose edits make it stale
    record     model -> path of the verification record (or None)
    applies    model -> whether this model has this artifact
    subname    model -> the task's name after "basename:"
    isolate    run the builder in a child process (CUDA never enters doit's own process)
    after      model -> tasks to run first, without making this one stale
    (A plain class, not a dataclass: dodo.py loads on every doit call and must stay cheap.)
    """

    def __init__(self, basename: str, doc: str, builder: str, outputs: Callable[[Model], list[str]], *,
                 inputs=lambda m: [], params=lambda m: {}, tools: tuple[str, ...] = (), code: tuple[str, ...] = (),
                 record=lambda m: None, applies=lambda m: True, subname=lambda m: m["name"], isolate: bool = False,
                 after=lambda m: []):
        self.basename, self.doc, self.builder, self.outputs = basename, doc, builder, outputs
        self.inputs, self.params, self.tools, self.code, self.record = inputs, params, tools, code, record
        self.applies, self.subname, self.isolate, self.after = applies, subname, isolate, after

    def task(self, model: Model) -> dict:
        outputs, record = self.outputs(model), self.record(model)
        params = {"params": self.params(model), "tools": versions(*self.tools)}
        spec = {"task": f"{self.basename}:{self.subname(model)}", "builder": self.builder, "model": model,
                "inputs": self.inputs(model), "outputs": outputs, "record": record, "params": params,
                "code": list(self.code), "isolate": self.isolate}
        return {
            "name": self.subname(model),
            "doc": self.doc.format(**model),
            "file_dep": self.inputs(model) + list(self.code),
            "targets": outputs + ([record] if record else []),
            "task_dep": self.after(model),
            "uptodate": [params_unchanged(params)],
            "actions": [(run_step, [spec])],
            "clean": True,
        }


class params_unchanged:
    """doit `uptodate`: True while the step's parameters equal those of its last successful run."""

    def __init__(self, params: dict):
        self.params = json.loads(json.dumps(params))  # the JSON form, as stored
        self.changed: list[str] | None = None

    def configure_task(self, task) -> None:
        task.value_savers.append(lambda: {"_params": self.params})

    def __call__(self, task, values) -> bool:
        old = values.get("_params")
        self.changed = ["(no successful run recorded)"] if old is None else _diff(old, self.params)
        return not self.changed

    def __repr__(self) -> str:
        return "parameters changed: " + "; ".join(self.changed) if self.changed else "parameters unchanged"


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k, "(unset)"), new.get(k, "(unset)"), f"{path}.{k}" if path else k)
        return out
    return [] if old == new else [f"{path}: {old!r} -> {new!r}"]


class StepContext:
    """What a builder sees: the model, its inputs, and temporary paths to write its outputs to
    (`outputs` are the final paths, `tmp` maps each to the temporary path the builder must write)."""

    def __init__(self, model: Model, inputs: list[Path], outputs: list[Path], tmp: dict[Path, Path], params: dict):
        self.model, self.inputs, self.outputs, self.tmp, self.params = model, inputs, outputs, tmp, params
        self.kept: set[Path] = set()

    @property
    def settings(self) -> dict:
        return self.model.get("settings", {})

    def out(self, i: int = 0) -> Path:
        """Temporary path for output i (the builder writes here; the runner renames)."""
        return self.tmp[self.outputs[i]]

    def keep(self, final: Path) -> None:
        """The existing file at `final` is already right (e.g. a checkpoint the user placed): don't replace it."""
        self.kept.add(Path(final))


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


def _tmp_for(final: Path) -> Path:
    """`.model.tmp-PID.onnx`: hidden, unmistakably unfinished, same suffix (tools check suffixes)."""
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")


def _remove_leftovers(final: Path) -> None:
    """Temporary files of killed earlier runs."""
    for old in glob.glob(glob.escape(str(final.with_name(f".{final.stem}.tmp-"))) + f"*{final.suffix}"):
        Path(old).unlink(missing_ok=True)


def call_builder(builder: str, ctx: StepContext):
    module, func = builder.split(":")
    return getattr(importlib.import_module(module), func)(ctx)


def _call_isolated(spec: dict, ctx: StepContext):
    """The builder in `python -m pipeline.isolated`: same context, result (or user error) back as JSON."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="step-") as d:
        job, result = Path(d) / "job.json", Path(d) / "result.json"
        job.write_text(json.dumps({"builder": spec["builder"], "model": ctx.model, "params": ctx.params,
                                   "inputs": [str(p) for p in ctx.inputs],
                                   "tmp": [[str(f), str(t)] for f, t in ctx.tmp.items()], "result": str(result)}))
        proc = subprocess.run([sys.executable, "-m", "pipeline.isolated", str(job)])
        if not result.exists():
            raise RuntimeError(f"{spec['task']}: the builder process exited with {proc.returncode} and no result")
        out = json.loads(result.read_text())
    if "user_error" in out:
        raise UserError(**out["user_error"])
    ctx.kept.update(Path(p) for p in out.get("kept", []))
    return out["verification"]


def _prune_empty_dirs(folder: Path) -> None:
    """A failed first build leaves no empty Triton folder behind (Triton would try to load it)."""
    while len(folder.parts) > 1:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def run_step(spec: dict):
    """doit python-action: reuse (recorded or cached) or build into temporary files, verify, record,
    rename, cache. User errors -> TaskFailed (one paragraph, no traceback)."""
    from doit.exceptions import TaskFailed

    from .cache import ArtifactCache, recipe

    outputs = [Path(p) for p in spec["outputs"]]
    record = Path(spec["record"]) if spec["record"] else None
    finals = outputs + ([record] if record else [])
    for final in finals:
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(final)
    inputs = [Path(p) for p in spec["inputs"]]
    code = {c: sha256(c) for c in spec["code"]}
    key = recipe(spec, [sha256(p) for p in inputs], code)
    if _recorded(outputs, record, key):
        print(f"   {spec['task']}: already built with this recipe ({key[:12]}), kept")
        return True
    cache = ArtifactCache.configured()
    if cache and cache.restore(key, outputs, record, _tmp_for):
        print(f"   {spec['task']}: restored from the artifact cache ({key[:12]})")
        return True

    ctx = StepContext(model=spec["model"], inputs=inputs, outputs=outputs,
                      tmp={f: _tmp_for(f) for f in outputs}, params=spec["params"])
    try:
        with _progress(spec["task"]):
            verification = (_call_isolated(spec, ctx) if spec.get("isolate")
                            else call_builder(spec["builder"], ctx))
        for final in outputs:
            if final in ctx.kept:
                continue
            if not ctx.tmp[final].is_file() or ctx.tmp[final].stat().st_size == 0:
                raise RuntimeError(f"{spec['task']}: the builder wrote no {final}")
        if record:
            rec = {
                "task": spec["task"],
                "recipe": key,
                "untrained": bool(spec["model"].get("untrained")),
                "inputs": {str(p): sha256(p) for p in ctx.inputs},
                "outputs": {str(f): {"sha256": sha256(f if f in ctx.kept else ctx.tmp[f]),
                                     "bytes": (f if f in ctx.kept else ctx.tmp[f]).stat().st_size}
                            for f in outputs},
                "params": spec["params"]["params"],
                "tools": spec["params"]["tools"],
                "code": code,
                "verification": verification or {},
            }
            tmp_rec = _tmp_for(record)
            tmp_rec.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")
            os.replace(tmp_rec, record)
        for final in reversed(outputs):  # primary artifact last
            if final not in ctx.kept:
                os.replace(ctx.tmp[final], final)
    except BaseException as exc:
        for final in finals:
            _remove_leftovers(final)
            if final not in ctx.kept:
                Path(final).unlink(missing_ok=True)  # stale now: complete or absent
            _prune_empty_dirs(final.parent)
        if isinstance(exc, UserError):
            exc.file = exc.file or spec["model"].get("manifest")
            return TaskFailed(exc.paragraph)
        raise
    if cache:
        cache.store(key, outputs, record)
    return True


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
    except ValueError:
        return False
    if rec.get("recipe") != key:
        return False
    return all(p.is_file() and rec["outputs"].get(str(p), {}).get("sha256") == sha256(p) for p in outputs)
